// The requests of one HTTP call (a batch, n samples) in flight in the engine. The engine's
// sinks only push chunks into this group's queue (they never block); the handler thread pops
// them. Destroying a group aborts whatever has not finished: that is how a client that
// disconnects mid-stream frees its KV.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "sparrow/engine/request.h"
#include "sparrow/server/server_context.h"

namespace sparrow::server {

struct GroupEvent {
  size_t index = 0;  // which request of the group
  OutputChunk chunk;
};

class RequestGroup {
 public:
  // Submits every request (the engine sees them in order). If one is rejected, the ones
  // already submitted are aborted and the InputError propagates.
  RequestGroup(ServerContext& ctx, std::vector<Request> reqs);
  ~RequestGroup();
  RequestGroup(const RequestGroup&) = delete;
  RequestGroup& operator=(const RequestGroup&) = delete;

  // The next chunk of any request, or nullopt after `timeout` (or when all are done).
  std::optional<GroupEvent> next(std::chrono::milliseconds timeout);
  // Every request has sent its final chunk and every chunk was taken.
  bool done() const;
  // Waits for all final chunks (non-streaming): result per index.
  std::vector<OutputChunk> wait_all();
  size_t size() const { return rids_.size(); }
  const std::vector<std::string>& rids() const { return rids_; }

 private:
  struct Shared;
  ServerContext& ctx_;
  std::shared_ptr<Shared> shared_;
  std::vector<std::string> rids_;
};

}  // namespace sparrow::server
