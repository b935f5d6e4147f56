#include "sparrow/core/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>

namespace sparrow {
namespace {
thread_local bool t_inside_pool = false;

// Spins until done() or ns nanoseconds have passed; returns done().
template <class F>
bool spin_until(F done, int64_t ns) {
  if (ns <= 0) return done();
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      _mm_pause();
    }
    if (std::chrono::steady_clock::now() - t0 > std::chrono::nanoseconds(ns)) return done();
  }
}

std::pair<int64_t, int64_t> chunk_range(int64_t n, int chunks, int i) {
  const int64_t base = n / chunks, extra = n % chunks;
  const int64_t begin = i * base + std::min<int64_t>(i, extra);
  return {begin, begin + base + (i < extra ? 1 : 0)};
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) {
    threads = int(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("SPARROW_NUM_THREADS")) threads = std::atoi(env);
    threads = std::max(threads, 1);
  }
  if (const char* env = std::getenv("SPARROW_POOL_SPIN_US")) spin_ns_ = int64_t(std::atoll(env)) * 1000;
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& w : workers_) w.join();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool;
  return pool;
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* job;
    int64_t n;
    int chunks;
    spin_until([&] { return stop_.load(std::memory_order_acquire) ||
                            generation_.load(std::memory_order_acquire) != seen; },
               spin_ns_);
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
      chunks = job_chunks_;
    }
    if (index < chunks) {
      auto [b, e] = chunk_range(n, chunks, index);
      t_inside_pool = true;
      (*job)(b, e);  // kernels do not throw; an exception here would be a bug
      t_inside_pool = false;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) cv_done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                              int64_t grain) {
  if (n <= 0) return;
  const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
  const int chunks = int(std::min<int64_t>(size(), max_chunks));
  if (chunks == 1 || workers_.empty() || t_inside_pool) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_chunks_ = chunks;
    pending_ = int(workers_.size());
    ++generation_;
  }
  cv_start_.notify_all();
  auto [b, e] = chunk_range(n, chunks, 0);
  t_inside_pool = true;
  std::exception_ptr err;
  try {
    fn(b, e);
  } catch (...) {
    err = std::current_exception();
  }
  t_inside_pool = false;
  spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; }, spin_ns_);
  std::unique_lock<std::mutex> lock(mu_);
  cv_done_.wait(lock, [&] { return pending_ == 0; });
  if (err) std::rethrow_exception(err);
}

}  // namespace sparrow
