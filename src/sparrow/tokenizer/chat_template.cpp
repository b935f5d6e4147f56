#include "sparrow/tokenizer/tokenizer.h"
#include "sparrow/core/error.h"
namespace sparrow {
std::string Tokenizer::apply_chat_template(const nlohmann::ordered_json&, const nlohmann::ordered_json&, bool,
                                           const nlohmann::ordered_json&) const {
  throw_input_error("chat templates: not implemented yet");
}
}  // namespace sparrow
