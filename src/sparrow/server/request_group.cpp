#include "sparrow/server/request_group.h"

#include "sparrow/server/http_util.h"
#include "sparrow/server/metrics.h"

namespace sparrow::server {

struct RequestGroup::Shared {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<GroupEvent> queue;
  std::vector<uint8_t> finished;
  size_t num_finished = 0;
};

namespace {
// Timing per request, touched only by the engine thread (inside its sink).
struct Timing {
  double start = now_s();
  double last = 0;
  bool first = true;
};
}  // namespace

RequestGroup::RequestGroup(ServerContext& ctx, std::vector<Request> reqs) : ctx_(ctx), shared_(std::make_shared<Shared>()) {
  ++ctx.in_flight;
  shared_->finished.assign(reqs.size(), 0);
  Metrics* metrics = ctx.metrics.get();
  size_t submitted = 0;
  try {
    for (size_t i = 0; i < reqs.size(); ++i) {
      Request& r = reqs[i];
      if (r.rid.empty()) r.rid = random_id();
      r.stream = true;  // per-step chunks for streaming and TTFT / inter-token metrics
      rids_.push_back(r.rid);
      auto timing = std::make_shared<Timing>();
      std::weak_ptr<Shared> weak = shared_;
      ctx.engine->submit(std::move(r), [weak, i, timing, metrics](const OutputChunk& ch) {
        const double t = now_s();
        if (metrics) {
          if (!ch.new_ids.empty()) {
            if (timing->first) metrics->on_first_token(t - timing->start);
            else metrics->on_tokens(t - timing->last, int64_t(ch.new_ids.size()));
            timing->first = false;
            timing->last = t;
          }
          if (ch.finished) {
            metrics->on_request(!ch.error);
            metrics->on_finished(t - timing->start, ch.result.prompt_tokens, int64_t(ch.result.output_ids.size()),
                                 ch.result.cached_tokens);
          }
        }
        auto s = weak.lock();
        if (!s) return;  // the handler is gone (its destructor aborted us)
        {
          std::lock_guard<std::mutex> lock(s->mu);
          s->queue.push_back({i, ch});
          if (ch.finished && !s->finished[i]) s->finished[i] = 1, ++s->num_finished;
        }
        s->cv.notify_all();
      });
      ++submitted;
    }
  } catch (...) {
    for (size_t i = 0; i < submitted; ++i) ctx.engine->abort(rids_[i]);
    --ctx.in_flight;
    throw;
  }
}

RequestGroup::~RequestGroup() {
  std::vector<std::string> unfinished;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    for (size_t i = 0; i < rids_.size(); ++i)
      if (!shared_->finished[i]) unfinished.push_back(rids_[i]);
  }
  for (const std::string& rid : unfinished) ctx_.engine->abort(rid);
  --ctx_.in_flight;
}

std::optional<GroupEvent> RequestGroup::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(shared_->mu);
  shared_->cv.wait_for(lock, timeout, [&] { return !shared_->queue.empty() || shared_->num_finished == rids_.size(); });
  if (shared_->queue.empty()) return std::nullopt;
  GroupEvent ev = std::move(shared_->queue.front());
  shared_->queue.pop_front();
  return ev;
}

bool RequestGroup::done() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->num_finished == rids_.size() && shared_->queue.empty();
}

std::vector<OutputChunk> RequestGroup::wait_all() {
  std::vector<OutputChunk> out(rids_.size());
  std::unique_lock<std::mutex> lock(shared_->mu);
  shared_->cv.wait(lock, [&] { return shared_->num_finished == rids_.size(); });
  for (GroupEvent& ev : shared_->queue)
    if (ev.chunk.finished) out[ev.index] = std::move(ev.chunk);
  shared_->queue.clear();
  return out;
}

}  // namespace sparrow::server
