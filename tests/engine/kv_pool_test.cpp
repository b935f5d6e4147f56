#include "sparrow/engine/kv_pool.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace sparrow {
namespace {

TEST(KVPool, LayoutAndSize) {
  KVPool pool(2, 10, 2, 4, DType::kBF16);
  EXPECT_EQ(pool.k(1).shape(), (Shape{10, 2, 4}));
  EXPECT_EQ(pool.bytes_per_token(), 2u * 2u * 2u * 4u * 2u);
}

TEST(SlotAllocator, AllocatesAllSlotsOnceAndRefusesBeyond) {
  SlotAllocator pool(10);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(pool.alloc(6, a));
  EXPECT_FALSE(pool.alloc(5, b));
  EXPECT_TRUE(b.empty());
  ASSERT_TRUE(pool.alloc(4, b));
  std::vector<int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(all[size_t(i)], i);
  EXPECT_EQ(pool.free_slots(), 0);
  pool.free(a.data(), int64_t(a.size()));
  EXPECT_EQ(pool.free_slots(), 6);
  const int32_t bad = 10;
  EXPECT_THROW(pool.free(&bad, 1), Error);
}

TEST(ReqToTokenPool, RowsAreIndependent) {
  ReqToTokenPool pool(3, 8);
  const int32_t r0 = pool.alloc(), r1 = pool.alloc(), r2 = pool.alloc();
  EXPECT_EQ(pool.alloc(), -1);
  EXPECT_NE(r0, r1);
  pool.row(r1)[7] = 42;
  EXPECT_EQ(pool.table()[r1 * 8 + 7], 42);
  pool.free(r2);
  EXPECT_EQ(pool.alloc(), r2);
}

}  // namespace
}  // namespace sparrow
