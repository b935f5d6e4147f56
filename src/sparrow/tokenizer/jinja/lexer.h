// Jinja lexer: splits a template into text and tag tokens, applying whitespace control the
// way transformers configures Jinja (trim_blocks=True, lstrip_blocks=True) plus the explicit
// {%- -%} / {{- -}} / {#- -#} markers.
#pragma once

#include <string>
#include <vector>

namespace sparrow::jinja {

struct Token {
  enum class Kind {
    kText,         // literal template text
    kExprOpen,     // {{
    kExprClose,    // }}
    kStmtOpen,     // {%
    kStmtClose,    // %}
    kName,         // identifier or keyword
    kString,       // string literal (value already unescaped)
    kInt,
    kFloat,
    kOp,           // operator / punctuation: + - * / // % ** ~ == != < > <= >= = . , : | ( ) [ ] { }
    kEnd,
  };
  Kind kind;
  std::string text;
  int line;
};

// Throws InputError("chat template: line N: ...") on malformed input.
std::vector<Token> lex(const std::string& source);

}  // namespace sparrow::jinja
