// Server-sent events framing: one `data: <json>\n\n` event per chunk, `data: [DONE]\n\n` at
// the end (SGLang and OpenAI streams).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace sparrow::server {

std::string sse_event(const nlohmann::json& data);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace sparrow::server
