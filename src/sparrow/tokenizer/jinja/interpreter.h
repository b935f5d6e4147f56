// Evaluates a parsed template against a set of variables, with the filters, tests, methods
// and globals that chat templates use (see docs/tokenizer.md for the list). Semantics follow
// Jinja2 as configured by transformers: ImmutableSandboxedEnvironment (lists and dicts cannot
// be modified, except namespace attributes), default Undefined (printing it gives "", using it
// in arithmetic or calling methods on it is an error), loop controls enabled.
#pragma once

#include <string>

#include "sparrow/tokenizer/jinja/ast.h"
#include "sparrow/tokenizer/jinja/value.h"

namespace sparrow::jinja {

// `vars` is an object of top-level variables. Throws InputError on template errors, with the
// line number; raise_exception("msg") becomes InputError("chat template: msg").
std::string render(const Template& tpl, const Value& vars);

// Builtins, implemented in builtins.cpp and used by the interpreter.
namespace builtins {
Value filter(const std::string& name, Value& target, std::vector<Value>& args, Kwargs& kwargs, int line);
bool test(const std::string& name, const Value& target, std::vector<Value>& args, int line);
// obj.name(args...) for str, dict and list methods; returns false if there is no such method.
bool method(const Value& obj, const std::string& name, std::vector<Value>& args, Kwargs& kwargs, int line,
            Value& result);
Value get_attr(const Value& obj, const std::string& name, int line);
Value get_item(const Value& obj, const Value& key, int line);
// The values a for loop visits (list items, dict keys, string characters).
Array iterate(const Value& v, int line);
int64_t length(const Value& v, int line);
[[noreturn]] void fail(int line, const std::string& msg);
}  // namespace builtins

}  // namespace sparrow::jinja
