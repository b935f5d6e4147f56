// A fixed pool of worker threads that uses every core. parallel_for splits [0, n) into
// contiguous chunks, one per participant, by a rule that depends only on (n, threads):
// each index is computed by exactly one thread and no reduction crosses threads, so
// results never depend on scheduling. Idle threads spin briefly before sleeping, so
// back-to-back calls (a decode step) do not pay a futex wake-up each.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sparrow {

class ThreadPool {
 public:
  // threads <= 0: one per hardware thread.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }  // workers plus the caller

  // Calls fn(begin, end) over disjoint chunks covering [0, n), at least `grain` indices per
  // chunk; blocks until all are done. The calling thread takes part. Not reentrant: a
  // nested call from inside fn runs serially.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

  // The process-wide pool used by kernels.
  static ThreadPool& global();

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  // Written under mu_; also read without it while spinning.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  // How long an idle worker (or a caller waiting for workers) spins before sleeping on the
  // condition variable: a futex wake-up costs tens of microseconds, a large share of a
  // decode-sized parallel_for. SPARROW_POOL_SPIN_US overrides (0 disables).
  int64_t spin_ns_ = 50'000;
  std::mutex run_mu_;  // one parallel_for at a time
};

}  // namespace sparrow
