#include "sparrow/engine/sync_generate.h"

#include <condition_variable>
#include <mutex>

namespace sparrow {

std::vector<SyncOutput> generate_sync(Engine& engine, std::vector<Request> requests) {
  std::vector<SyncOutput> out(requests.size());
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0, submitted = 0;
  std::vector<std::string> rids;
  try {
    for (size_t i = 0; i < requests.size(); ++i) {
      if (requests[i].rid.empty()) requests[i].rid = "sync-" + std::to_string(i);
      requests[i].stream = false;
      rids.push_back(requests[i].rid);
      engine.submit(std::move(requests[i]), [&, i](const OutputChunk& ch) {
        if (!ch.finished) return;
        std::lock_guard<std::mutex> lock(mu);
        out[i].result = ch.result;
        out[i].text = ch.text;
        out[i].error = ch.error;
        ++done;
        cv.notify_all();
      });
      ++submitted;
    }
  } catch (...) {
    for (size_t i = 0; i < submitted; ++i) engine.abort(rids[i]);
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == submitted; });
    throw;
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == out.size(); });
  return out;
}

}  // namespace sparrow
