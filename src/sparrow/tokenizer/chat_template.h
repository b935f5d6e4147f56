// Chat templates: renders a Hugging Face chat template (Jinja) the way transformers'
// apply_chat_template(tokenize=False) does, with Sparrow's own Jinja-subset interpreter.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace sparrow {

namespace jinja {
struct Template;
}

// A parsed template, reusable across threads and calls.
class ChatTemplate {
 public:
  // Throws InputError naming the line and construct if the template uses unsupported syntax.
  explicit ChatTemplate(const std::string& source);
  // messages: array of message objects; tools: array or null; kwargs: object or null, extra
  // template variables (enable_thinking, bos_token, ...). As transformers 5 does before
  // rendering: keys whose value is null are dropped from each message, and a message's
  // reasoning (reasoning_content / thinking / reasoning) is exposed under both
  // "reasoning_content" and "thinking".
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     bool add_generation_prompt, const nlohmann::ordered_json& kwargs) const;

 private:
  std::shared_ptr<const jinja::Template> tpl_;
};

// One-shot helper: parse and render.
std::string render_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                 const nlohmann::ordered_json& kwargs = nullptr);

}  // namespace sparrow
