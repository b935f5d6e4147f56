// Input preparation mirrors transformers 5 (tokenization_utils_base.apply_chat_template and
// utils/chat_template_utils.render_jinja_template): None-valued message keys dropped,
// reasoning aliased, tools/documents passed as given (None when absent), special tokens then
// caller kwargs as extra variables.
#include "sparrow/tokenizer/chat_template.h"

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/jinja/ast.h"
#include "sparrow/tokenizer/jinja/interpreter.h"
#include "sparrow/tokenizer/tokenizer.h"

namespace sparrow {

namespace {

using jinja::Value;

Value prepare_message(const nlohmann::ordered_json& m) {
  SPARROW_REQUIRE(m.is_object(), "chat messages must be objects, got {}", m.dump());
  nlohmann::ordered_json msg = nlohmann::ordered_json::object();
  for (auto it = m.begin(); it != m.end(); ++it)
    if (!it.value().is_null()) msg[it.key()] = it.value();
  for (const char* field : {"reasoning_content", "thinking", "reasoning"}) {
    if (!msg.contains(field)) continue;
    nlohmann::ordered_json reasoning = msg[field];
    // {"thinking": r, **message, "reasoning_content": r}
    nlohmann::ordered_json aliased = nlohmann::ordered_json::object();
    aliased["thinking"] = reasoning;
    for (auto it = msg.begin(); it != msg.end(); ++it) aliased[it.key()] = it.value();
    aliased["reasoning_content"] = reasoning;
    msg = std::move(aliased);
    break;
  }
  return Value::from_json(msg);
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source) : tpl_(jinja::parse(source)) {}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                 bool add_generation_prompt, const nlohmann::ordered_json& kwargs) const {
  SPARROW_REQUIRE(messages.is_array(), "chat messages must be a JSON array");
  SPARROW_REQUIRE(!messages.empty(), "cannot apply a chat template to an empty conversation");
  SPARROW_REQUIRE(tools.is_null() || tools.is_array(), "tools must be a JSON array or null");
  SPARROW_REQUIRE(kwargs.is_null() || kwargs.is_object(), "chat template kwargs must be a JSON object");
  jinja::Array msgs;
  for (const auto& m : messages) msgs.push_back(prepare_message(m));
  if (tools.is_array())
    for (const auto& t : tools) SPARROW_REQUIRE(t.is_object(), "tools must be JSON objects (schemas)");
  auto vars = std::make_shared<jinja::Object>();
  vars->set("messages", Value(std::move(msgs)));
  vars->set("tools", Value::from_json(tools));
  vars->set("documents", Value::none());
  vars->set("add_generation_prompt", Value(add_generation_prompt));
  if (kwargs.is_object())
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) vars->set(it.key(), Value::from_json(it.value()));
  return jinja::render(*tpl_, Value(std::move(vars)));
}

std::string render_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                 const nlohmann::ordered_json& kwargs) {
  return ChatTemplate(source).render(messages, tools, add_generation_prompt, kwargs);
}

std::string Tokenizer::apply_chat_template(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                           bool add_generation_prompt, const nlohmann::ordered_json& kwargs) const {
  SPARROW_REQUIRE(has_chat_template(), "this tokenizer has no chat template (tokenizer_config.json chat_template)");
  if (!parsed_template_) throw InputError(template_error_);
  // transformers: {**special_tokens_map, **kwargs}
  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  if (!bos_token_.empty()) vars["bos_token"] = bos_token_;
  if (!eos_token_.empty()) vars["eos_token"] = eos_token_;
  if (!unk_token_.empty()) vars["unk_token"] = unk_token_;
  if (!pad_token_.empty()) vars["pad_token"] = pad_token_;
  if (kwargs.is_object())
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) vars[it.key()] = it.value();
  else
    SPARROW_REQUIRE(kwargs.is_null(), "chat template kwargs must be a JSON object");
  return parsed_template_->render(messages, tools, add_generation_prompt, vars);
}

}  // namespace sparrow
