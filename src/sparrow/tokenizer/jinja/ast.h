// Syntax tree of a parsed template. One Expr / Stmt struct per category with a kind tag keeps
// the interpreter a pair of switch statements.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sparrow/tokenizer/jinja/value.h"

namespace sparrow::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // value
    kName,      // name
    kList,      // args
    kTuple,     // args (a parenthesised or bare comma list)
    kDict,      // args: key0, value0, key1, value1, ...
    kGetAttr,   // args[0].name
    kGetItem,   // args[0][args[1]]
    kSlice,     // args[0][args[1]:args[2]:args[3]] (null parts omitted)
    kCall,      // args[0](args[1..], kwargs)
    kFilter,    // args[0] | name(args[1..], kwargs)
    kTest,      // args[0] is [not] name(args[1..])
    kUnary,     // name in {"-", "+", "not"} applied to args[0]
    kBinary,    // args[0] name args[1]; name in + - * / // % ** ~ == != < > <= >= in "not in"
    kAnd,
    kOr,
    kCond,      // args[0] if args[1] else args[2] (args[2] may be null)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // conditions[i] -> bodies[i]; bodies.back() is else when it has no condition
    kFor,       // for targets in expr [if filter] body [else else_body]
    kSet,       // set targets = expr, or set ns.attr = expr (attr non-empty)
    kSetBlock,  // {% set name %}body{% endset %}
    kMacro,     // macro name(params) body
    kBreak,
    kContinue,
    kScope,     // a body rendered in place ({% generation %})
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  std::vector<std::string> targets;
  std::string attr;
  ExprPtr filter;
  Body body, else_body;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters with defaults
};

struct Template {
  Body body;
};

// Parses template source. Throws InputError naming the line and the construct on anything
// outside the supported subset.
std::shared_ptr<const Template> parse(const std::string& source);

}  // namespace sparrow::jinja
