// stream_group: a RequestGroup as a chunked text/event-stream response.
#include "sparrow/core/log.h"
#include "sparrow/server/routes.h"

namespace sparrow::server {

void stream_group(httplib::Response& res, std::shared_ptr<RequestGroup> group, StreamEventFn on_event, StreamEndFn on_end) {
  struct State {
    std::shared_ptr<RequestGroup> group;
    StreamEventFn on_event;
    StreamEndFn on_end;
  };
  auto st = std::make_shared<State>(State{std::move(group), std::move(on_event), std::move(on_end)});
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [st](size_t, httplib::DataSink& sink) {
    try {
      std::string out;
      // Batch up what is already queued into one write; wait briefly when nothing is.
      for (auto ev = st->group->next(std::chrono::milliseconds(100)); ev;
           ev = st->group->next(std::chrono::milliseconds(0)))
        st->on_event(*ev, out);
      const bool finished = st->group->done();
      if (finished) st->on_end(out);
      if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // client gone
      if (finished) {
        sink.done();
        return true;
      }
      return out.empty() ? sink.is_writable() : true;
    } catch (const std::exception& e) {
      log(LogLevel::kError, "stream failed: {}", e.what());
      return false;
    }
  });
}

}  // namespace sparrow::server
