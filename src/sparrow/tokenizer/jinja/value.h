// Values of the Jinja subset: the Python objects a chat template sees (None, bool, int,
// float, str, list, dict) plus Jinja's Undefined, namespace() objects and callables. Lists and
// dicts are shared by reference, as in Python, so `ns.x = ...` is seen by every holder.
// Dicts keep insertion order (Python 3.7+), which tojson output depends on.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparrow::jinja {

class Value;
using Array = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(std::vector<Value>& args, Kwargs& kwargs)>;

struct Object {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // created by namespace(): the only object `set x.y = ...` may change
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

class Value {
 public:
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kArray, kObject, kFunction };

  Value() = default;  // undefined
  static Value undefined(std::string name = "") {
    Value v;
    v.str_ = std::move(name);
    return v;
  }
  static Value none() { return Value(Type::kNone); }
  Value(bool b) : type_(Type::kBool), int_(b) {}
  Value(int v) : type_(Type::kInt), int_(v) {}
  Value(int64_t v) : type_(Type::kInt), int_(v) {}
  Value(size_t v) : type_(Type::kInt), int_(static_cast<int64_t>(v)) {}
  Value(double v) : type_(Type::kFloat), float_(v) {}
  Value(std::string s) : type_(Type::kString), str_(std::move(s)) {}
  Value(const char* s) : type_(Type::kString), str_(s) {}
  Value(std::string_view s) : type_(Type::kString), str_(s) {}
  Value(Array a) : type_(Type::kArray), array_(std::make_shared<Array>(std::move(a))) {}
  Value(std::shared_ptr<Object> o) : type_(Type::kObject), object_(std::move(o)) {}
  static Value function(Function f) {
    Value v(Type::kFunction);
    v.function_ = std::make_shared<Function>(std::move(f));
    return v;
  }
  static Value object() { return Value(std::make_shared<Object>()); }
  // A Python tuple: an array that prints as (a, b) (tuple literals, dict items()).
  static Value tuple(Array a) {
    Value v(std::move(a));
    v.tuple_ = true;
    return v;
  }
  bool is_tuple() const { return tuple_; }
  static Value from_json(const nlohmann::ordered_json& j);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::kUndefined; }
  bool is_none() const { return type_ == Type::kNone; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_float() const { return type_ == Type::kFloat; }
  bool is_number() const { return type_ == Type::kInt || type_ == Type::kFloat; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  bool is_function() const { return type_ == Type::kFunction; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_double() const { return type_ == Type::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& str() const { return str_; }  // string value, or the name of an undefined
  Array& array() const { return *array_; }
  Object& obj() const { return *object_; }
  const Function& fn() const { return *function_; }

  bool truthy() const;
  // Python str(): what {{ value }} prints ("" for undefined, "None", "True", repr of lists).
  std::string to_str() const;
  // Python repr() (strings quoted); used inside lists and dicts.
  std::string repr() const;
  // Python type name for error messages.
  std::string type_name() const;

  friend bool operator==(const Value& a, const Value& b);

 private:
  explicit Value(Type t) : type_(t) {}
  Type type_ = Type::kUndefined;
  bool tuple_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
  std::shared_ptr<Function> function_;
};

// Python's float repr: shortest round-trip digits, '1e-05' / '1.5e+16' outside [1e-4, 1e16).
std::string python_float_repr(double d);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys) exactly as Python writes it.
// indent < 0 means None. Throws InputError for values JSON cannot hold (undefined, functions).
struct JsonDumpOptions {
  bool ensure_ascii = false;
  int indent = -1;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};
std::string json_dumps(const Value& v, const JsonDumpOptions& opts);

// Unicode helpers on UTF-8 strings by code point, as Python indexes str.
std::u32string to_u32(std::string_view s);
std::string from_u32(std::u32string_view s);

}  // namespace sparrow::jinja
