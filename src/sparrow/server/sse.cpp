#include "sparrow/server/sse.h"

#include "sparrow/server/http_util.h"

namespace sparrow::server {

std::string sse_event(const nlohmann::json& data) { return "data: " + dump(data) + "\n\n"; }

}  // namespace sparrow::server
