// A request inside a Scheduler: the caller's Request plus everything the scheduler tracks
// about it. Only the scheduler thread touches it.
#pragma once

#include <chrono>
#include <memory>

#include "sparrow/engine/radix_cache.h"
#include "sparrow/engine/request.h"
#include "sparrow/engine/stop_checker.h"

namespace sparrow {

struct ScheduledRequest {
  enum class State : uint8_t { kWaiting, kPrefilling, kDecoding };

  Request r;
  OutputSink sink;
  std::vector<int32_t> tokens;  // prompt + output; KV exists for tokens[0, kv_len)
  int32_t prompt_len = 0;
  int64_t kv_len = 0;
  int64_t extend_target = 0;    // tokens the current prefill must reach
  bool recompute = false;       // retracted: input logprobs were already reported
  State state = State::kWaiting;
  int32_t req_slot = -1;
  RadixCache::Node* cache_node = nullptr;  // locked cached prefix (nullptr: none)
  int64_t cache_len = 0;                   // its tokens
  int64_t match_hint = 0;                  // lpm ordering key
  uint64_t seed = 0;
  GenerateResult result;
  std::unique_ptr<StopChecker> stop;  // text and stop strings (null without a tokenizer)
  size_t streamed_ids = 0;            // output tokens already sent
  std::chrono::steady_clock::time_point arrival;
};

}  // namespace sparrow
