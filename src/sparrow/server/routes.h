// Route tables: SGLang's native API (routes_native.cpp) and the OpenAI-compatible API
// (routes_openai.cpp). Both run on httplib's worker threads and talk to the engine only
// through RequestGroup.
#pragma once

#include <httplib.h>

#include <functional>
#include <memory>
#include <string>

#include "sparrow/server/request_group.h"
#include "sparrow/server/server_context.h"

namespace sparrow::server {

void register_native_routes(httplib::Server& svr, ServerContext& ctx);
void register_openai_routes(httplib::Server& svr, ServerContext& ctx);

// Streams a RequestGroup as SSE: `on_event` turns each engine chunk into zero or more
// complete SSE events (appended to its string), `on_end` writes the closing events (usage,
// [DONE]). A failed write (client gone) ends the response; the group is then destroyed,
// which aborts its requests.
using StreamEventFn = std::function<void(GroupEvent&, std::string&)>;
using StreamEndFn = std::function<void(std::string&)>;
void stream_group(httplib::Response& res, std::shared_ptr<RequestGroup> group, StreamEventFn on_event, StreamEndFn on_end);

}  // namespace sparrow::server
