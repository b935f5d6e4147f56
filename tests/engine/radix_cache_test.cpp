#include "sparrow/engine/radix_cache.h"

#include <gtest/gtest.h>

namespace sparrow {
namespace {

std::vector<int32_t> alloc(SlotAllocator& a, int64_t n) {
  std::vector<int32_t> s;
  EXPECT_TRUE(a.alloc(n, s));
  return s;
}

TEST(RadixCache, MatchesLongestPrefixAndSplitsEdges) {
  SlotAllocator slots(100);
  RadixCache cache(slots);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5};
  const auto sa = alloc(slots, 5);
  cache.insert(a, sa);
  EXPECT_EQ(cache.total_size(), 5);
  auto m = cache.match_prefix(std::vector<int32_t>{1, 2, 3, 9});
  EXPECT_EQ(m.slots, std::vector<int32_t>(sa.begin(), sa.begin() + 3));
  EXPECT_EQ(m.node->tokens, (std::vector<int32_t>{1, 2, 3}));  // the edge was split at the match
  EXPECT_EQ(cache.total_size(), 5);
  EXPECT_TRUE(cache.match_prefix(std::vector<int32_t>{7}).slots.empty());
}

TEST(RadixCache, InsertFreesDuplicateSlotsOfACachedPrefix) {
  SlotAllocator slots(100);
  RadixCache cache(slots);
  cache.insert(std::vector<int32_t>{1, 2, 3}, alloc(slots, 3));
  const int64_t free_before = slots.free_slots();
  const auto dup = alloc(slots, 4);  // a second request recomputed 1,2,3 and added 4
  std::vector<int32_t> cached;
  cache.insert(std::vector<int32_t>{1, 2, 3, 4}, dup, &cached);
  EXPECT_EQ(slots.free_slots(), free_before - 1);  // three duplicates went back
  EXPECT_EQ(cached.size(), 4u);
  EXPECT_EQ(cached[3], dup[3]);
  EXPECT_EQ(cache.total_size(), 4);
}

TEST(RadixCache, LockedNodesSurviveEvictionLruGoesFirst) {
  SlotAllocator slots(100);
  RadixCache cache(slots);
  cache.insert(std::vector<int32_t>{1, 2}, alloc(slots, 2));
  cache.insert(std::vector<int32_t>{5, 6, 7}, alloc(slots, 3));
  cache.insert(std::vector<int32_t>{8}, alloc(slots, 1));
  auto m = cache.match_prefix(std::vector<int32_t>{5, 6, 7});
  cache.lock(m.node);
  EXPECT_EQ(cache.protected_size(), 3);
  EXPECT_EQ(cache.evictable_size(), 3);
  // {1,2} is the least recently used unlocked leaf: it goes first.
  EXPECT_EQ(cache.evict(1), 2);
  EXPECT_TRUE(cache.match_prefix(std::vector<int32_t>{1, 2}).slots.empty());
  EXPECT_EQ(cache.match_prefix(std::vector<int32_t>{8}).slots.size(), 1u);
  EXPECT_EQ(cache.evict(100), 1);  // only {8} is left to evict
  EXPECT_EQ(cache.match_prefix(std::vector<int32_t>{5, 6, 7}).slots.size(), 3u);
  cache.unlock(m.node);
  EXPECT_EQ(cache.evict(100), 3);
  EXPECT_EQ(slots.free_slots(), 100);
  EXPECT_EQ(cache.total_size(), 0);
}

TEST(RadixCache, ResetReturnsEverything) {
  SlotAllocator slots(10);
  RadixCache cache(slots);
  cache.insert(std::vector<int32_t>{1, 2, 3}, alloc(slots, 3));
  cache.insert(std::vector<int32_t>{1, 4}, alloc(slots, 2));
  cache.reset();
  EXPECT_EQ(slots.free_slots(), 10);  // the duplicate of token 1 went back at insert, the rest now
  EXPECT_EQ(cache.total_size(), 0);
}

}  // namespace
}  // namespace sparrow
