// Filters, tests and str/dict/list methods. Each follows the Jinja2 filter or CPython method
// of the same name for the argument forms chat templates use; anything else is an InputError
// that names the construct, never a silent difference.
#include <algorithm>
#include <cmath>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/jinja/interpreter.h"
#include "sparrow/tokenizer/jinja/unicode_case_data.h"

namespace sparrow::jinja::builtins {

void fail(int line, const std::string& msg) { throw_input_error("chat template: line {}: {}", line, msg); }

namespace {

// CPython str.isspace() code points.
bool py_space(char32_t c) {
  return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  std::u32string u = to_u32(s);
  std::u32string set;
  bool use_set = chars && !chars->is_none() && !chars->is_undefined();
  if (use_set) set = to_u32(chars->str());
  auto drop = [&](char32_t c) { return use_set ? set.find(c) != std::u32string::npos : py_space(c); };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && drop(u[b])) ++b;
  if (right)
    while (e > b && drop(u[e - 1])) --e;
  return from_u32(std::u32string_view(u).substr(b, e - b));
}

// Python str.lower()/upper(): full case mappings from the generated tables, plus the
// Final_Sigma rule of lower() (a capital sigma ending a word becomes 'ς').
const case_data::CaseEntry* case_lookup(const case_data::CaseEntry* table, size_t n, char32_t c) {
  auto* end = table + n;
  auto* it = std::lower_bound(table, end, c, [](const case_data::CaseEntry& e, char32_t x) { return e.cp < x; });
  return (it != end && it->cp == c) ? it : nullptr;
}

void append_mapped(std::u32string& out, const case_data::CaseEntry* table, size_t n, char32_t c) {
  if (c < 0x80) {
    if (table == case_data::kUpper && c >= 'a' && c <= 'z') c -= 32;
    else if (table == case_data::kLower && c >= 'A' && c <= 'Z') c += 32;
    out.push_back(c);
    return;
  }
  const auto* e = case_lookup(table, n, c);
  if (!e) {
    out.push_back(c);
    return;
  }
  for (char32_t m : e->to)
    if (m) out.push_back(m);
}

bool is_cased(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return case_lookup(case_data::kUpper, case_data::kUpperSize, c) ||
         case_lookup(case_data::kLower, case_data::kLowerSize, c);
}

std::string py_upper(const std::string& s) {
  std::u32string out;
  for (char32_t c : to_u32(s)) append_mapped(out, case_data::kUpper, case_data::kUpperSize, c);
  return from_u32(out);
}

std::string py_lower(const std::string& s) {
  std::u32string u = to_u32(s), out;
  for (size_t i = 0; i < u.size(); ++i) {
    if (u[i] == 0x3A3 && i > 0 && is_cased(u[i - 1]) && !(i + 1 < u.size() && is_cased(u[i + 1]))) {
      out.push_back(0x3C2);
      continue;
    }
    append_mapped(out, case_data::kLower, case_data::kLowerSize, u[i]);
  }
  return from_u32(out);
}

// Python str.title(): first cased character of each run upper, the rest lower.
std::string py_title(const std::string& s) {
  std::u32string out;
  bool prev_cased = false;
  for (char32_t c : to_u32(s)) {
    if (prev_cased) append_mapped(out, case_data::kLower, case_data::kLowerSize, c);
    else append_mapped(out, case_data::kUpper, case_data::kUpperSize, c);
    prev_cased = is_cased(c);
  }
  return from_u32(out);
}

std::string py_capitalize(const std::string& s) {
  std::u32string u = to_u32(s), out;
  for (size_t i = 0; i < u.size(); ++i)
    append_mapped(out, i == 0 ? case_data::kUpper : case_data::kLower,
                  i == 0 ? case_data::kUpperSize : case_data::kLowerSize, u[i]);
  return from_u32(out);
}

std::string ascii_lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` between every character
    std::u32string u = to_u32(s);
    int64_t done = 0;
    for (char32_t c : u) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += from_u32(std::u32string(1, c));
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
    ++done;
  }
  out.append(s, pos);
  return out;
}

Array split(const std::string& s, const Value* sep, int64_t maxsplit, int line) {
  Array out;
  if (!sep || sep->is_none()) {
    std::u32string u = to_u32(s);
    size_t i = 0;
    while (true) {
      while (i < u.size() && py_space(u[i])) ++i;
      if (i >= u.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = u.size();
        while (e > i && py_space(u[e - 1])) --e;
        out.emplace_back(from_u32(std::u32string_view(u).substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < u.size() && !py_space(u[j])) ++j;
      out.emplace_back(from_u32(std::u32string_view(u).substr(i, j - i)));
      i = j;
    }
    return out;
  }
  if (!sep->is_string()) fail(line, "split() separator must be a string");
  const std::string& d = sep->str();
  if (d.empty()) fail(line, "split(): empty separator");
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t f = s.find(d, pos);
    if (f == std::string::npos) break;
    out.emplace_back(s.substr(pos, f - pos));
    pos = f + d.size();
  }
  out.emplace_back(s.substr(pos));
  return out;
}

const Value* kwarg(Kwargs& kw, const char* name) {
  for (auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

// Positional argument i, else keyword `name`, else null.
const Value* arg(std::vector<Value>& args, Kwargs& kw, size_t i, const char* name) {
  if (i < args.size()) return &args[i];
  return kwarg(kw, name);
}

void need_string(const Value& v, const std::string& what, int line) {
  if (v.is_undefined()) fail(line, "'" + v.str() + "' is undefined");
  if (!v.is_string()) fail(line, what + " needs a string, got '" + v.type_name() + "'");
}

// Jinja's attribute lookup used by selectattr/map/sort(attribute=...): dotted paths allowed.
Value attr_path(const Value& v, const std::string& path, int line) {
  Value cur = v;
  size_t pos = 0;
  while (true) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_undefined()) return cur;
    bool digits = !part.empty() && part.size() < 18 && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = digits && cur.is_array() ? get_item(cur, Value(static_cast<int64_t>(std::stoll(part))), line)
                                   : get_attr(cur, part, line);
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

int py_compare(const Value& a, const Value& b, bool case_sensitive) {
  if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool()))
    return a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double() ? 1 : 0;
  if (a.is_string() && b.is_string()) {
    std::string x = case_sensitive ? a.str() : ascii_lower(a.str());
    std::string y = case_sensitive ? b.str() : ascii_lower(b.str());
    return x < y ? -1 : x > y ? 1 : 0;
  }
  throw_input_error("chat template: cannot compare '{}' and '{}'", a.type_name(), b.type_name());
}

}  // namespace

Array iterate(const Value& v, int line) {
  switch (v.type()) {
    case Value::Type::kArray:
      return v.array();
    case Value::Type::kObject: {
      Array keys;
      for (const auto& [k, x] : v.obj().items) keys.emplace_back(k);
      return keys;
    }
    case Value::Type::kString: {
      Array chars;
      for (char32_t c : to_u32(v.str())) chars.emplace_back(from_u32(std::u32string(1, c)));
      return chars;
    }
    case Value::Type::kUndefined:
      return {};
    default:
      fail(line, "'" + v.type_name() + "' object is not iterable");
  }
}

int64_t length(const Value& v, int line) {
  switch (v.type()) {
    case Value::Type::kArray:
      return static_cast<int64_t>(v.array().size());
    case Value::Type::kObject:
      return static_cast<int64_t>(v.obj().items.size());
    case Value::Type::kString:
      return static_cast<int64_t>(to_u32(v.str()).size());
    case Value::Type::kUndefined:
      return 0;
    default:
      fail(line, "object of type '" + v.type_name() + "' has no len()");
  }
}

Value get_attr(const Value& obj, const std::string& name, int line) {
  if (obj.is_undefined()) fail(line, "'" + obj.str() + "' is undefined (reading attribute '" + name + "')");
  if (!name.empty() && name[0] == '_') return Value::undefined(name);  // sandbox: no private attributes
  if (obj.is_object()) {
    if (const Value* v = obj.obj().find(name)) return *v;
  }
  return Value::undefined(name);
}

Value get_item(const Value& obj, const Value& key, int line) {
  if (obj.is_undefined()) fail(line, "'" + obj.str() + "' is undefined (subscripting it)");
  if (obj.is_object()) {
    if (key.is_string()) {
      if (const Value* v = obj.obj().find(key.str())) return *v;
      return Value::undefined(key.str());
    }
    return Value::undefined(key.to_str());
  }
  if (obj.is_array() || obj.is_string()) {
    if (!key.is_int()) {
      if (key.is_string()) return Value::undefined(key.str());  // e.g. list['x']: Jinja gives undefined
      fail(line, "indices must be integers");
    }
    if (obj.is_array()) {
      int64_t n = static_cast<int64_t>(obj.array().size()), i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("[" + key.to_str() + "]");
      return obj.array()[i];
    }
    std::u32string u = to_u32(obj.str());
    int64_t n = static_cast<int64_t>(u.size()), i = key.as_int();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined("[" + key.to_str() + "]");
    return Value(from_u32(u.substr(i, 1)));
  }
  return Value::undefined(key.to_str());
}

bool test(const std::string& name, const Value& v, std::vector<Value>& args, int line) {
  auto a0 = [&]() -> const Value& {
    if (args.empty()) fail(line, "test '" + name + "' needs an argument");
    return args[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_object() && !v.obj().is_namespace;
  if (name == "sequence") return v.is_array() || v.is_string() || (v.is_object() && !v.obj().is_namespace);
  if (name == "iterable") return v.is_array() || v.is_string() || v.is_object() || v.is_undefined();
  if (name == "callable") return v.is_function();
  if (name == "odd" || name == "even") {
    if (!v.is_int()) fail(line, "test '" + name + "' needs an integer");
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") return a0().as_int() != 0 && v.as_int() % a0().as_int() == 0;
  if (name == "eq" || name == "equalto" || name == "==") return v == a0();
  if (name == "ne" || name == "!=") return !(v == a0());
  if (name == "lt" || name == "lessthan" || name == "<") return py_compare(v, a0(), true) < 0;
  if (name == "le" || name == "<=") return py_compare(v, a0(), true) <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return py_compare(v, a0(), true) > 0;
  if (name == "ge" || name == ">=") return py_compare(v, a0(), true) >= 0;
  if (name == "in") {
    const Value& c = a0();
    if (c.is_string()) return v.is_string() && c.str().find(v.str()) != std::string::npos;
    if (c.is_array()) return std::any_of(c.array().begin(), c.array().end(), [&](const Value& x) { return x == v; });
    if (c.is_object()) return v.is_string() && c.obj().find(v.str());
    return false;
  }
  if (name == "sameas") {
    const Value& o = a0();
    if (v.type() != o.type()) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.is_bool()) return v.as_bool() == o.as_bool();
    if (v.is_array()) return &v.array() == &o.array();
    if (v.is_object()) return &v.obj() == &o.obj();
    return v == o;
  }
  if (name == "lower") return v.is_string() && py_lower(v.str()) == v.str();
  if (name == "upper") return v.is_string() && py_upper(v.str()) == v.str();
  fail(line, "unsupported test 'is " + name + "'");
}

Value filter(const std::string& name, Value& v, std::vector<Value>& args, Kwargs& kw, int line) {
  if (name == "tojson") {
    // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    JsonDumpOptions o;
    if (const Value* a = arg(args, kw, 0, "ensure_ascii")) o.ensure_ascii = a->truthy();
    if (const Value* a = arg(args, kw, 1, "indent"); a && !a->is_none()) {
      if (a->is_string()) fail(line, "tojson: string indent is not supported");
      o.indent = static_cast<int>(a->as_int());
      o.item_sep = ",";
    }
    if (const Value* a = arg(args, kw, 2, "separators"); a && !a->is_none()) {
      if (!a->is_array() || a->array().size() != 2) fail(line, "tojson: separators must be a pair of strings");
      o.item_sep = a->array()[0].str();
      o.key_sep = a->array()[1].str();
    }
    if (const Value* a = arg(args, kw, 3, "sort_keys")) o.sort_keys = a->truthy();
    return Value(json_dumps(v, o));
  }
  if (name == "safe") return v;
  if (name == "string") return Value(v.to_str());
  if (name == "length" || name == "count") return Value(length(v, line));
  if (name == "trim") {
    need_string(v, "trim", line);
    return Value(strip(v.str(), arg(args, kw, 0, "chars"), true, true));
  }
  if (name == "lower") return Value(py_lower(v.to_str()));
  if (name == "upper") return Value(py_upper(v.to_str()));
  if (name == "capitalize") return Value(py_capitalize(v.to_str()));
  if (name == "title") return Value(py_title(v.to_str()));
  if (name == "replace") {
    need_string(v, "replace", line);
    if (args.size() < 2) fail(line, "replace needs (old, new)");
    const Value* count = arg(args, kw, 2, "count");
    return Value(replace_all(v.str(), args[0].to_str(), args[1].to_str(), count && !count->is_none() ? count->as_int() : -1));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value(Array{});
    if (!v.is_object()) fail(line, "items needs a mapping");
    Array out;
    for (const auto& [k, x] : v.obj().items) out.push_back(Value::tuple(Array{Value(k), x}));
    return Value(std::move(out));
  }
  if (name == "list") return Value(iterate(v, line));
  if (name == "first" || name == "last") {
    Array a = iterate(v, line);
    if (a.empty()) return Value::undefined(name);
    return name == "first" ? a.front() : a.back();
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = to_u32(v.str());
      std::reverse(u.begin(), u.end());
      return Value(from_u32(u));
    }
    Array a = iterate(v, line);
    std::reverse(a.begin(), a.end());
    return Value(std::move(a));
  }
  if (name == "default" || name == "d") {
    const Value* dflt = arg(args, kw, 0, "default_value");
    const Value* boolean = arg(args, kw, 1, "boolean");
    bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use ? (dflt ? *dflt : Value("")) : v;
  }
  if (name == "join") {
    const Value* sep = arg(args, kw, 0, "d");
    const Value* attribute = arg(args, kw, 1, "attribute");
    std::string out;
    bool first = true;
    for (const auto& x : iterate(v, line)) {
      if (!first && sep) out += sep->to_str();
      first = false;
      out += (attribute ? attr_path(x, attribute->to_str(), line) : x).to_str();
    }
    return Value(out);
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep_if = name == "selectattr" || name == "select";
    size_t k = 0;
    std::string attribute;
    if (by_attr) {
      if (args.empty()) fail(line, name + " needs an attribute name");
      attribute = args[k++].to_str();
    }
    std::string test_name = k < args.size() ? args[k++].to_str() : "";
    std::vector<Value> test_args(args.begin() + static_cast<long>(std::min(k, args.size())), args.end());
    Array out;
    for (const auto& x : iterate(v, line)) {
      Value subject = by_attr ? attr_path(x, attribute, line) : x;
      bool r = test_name.empty() ? subject.truthy() : test(test_name, subject, test_args, line);
      if (r == keep_if) out.push_back(x);
    }
    return Value(std::move(out));
  }
  if (name == "map") {
    Array out;
    if (const Value* attribute = kwarg(kw, "attribute")) {
      const Value* dflt = kwarg(kw, "default");
      for (const auto& x : iterate(v, line)) {
        Value r = attr_path(x, attribute->to_str(), line);
        out.push_back(r.is_undefined() && dflt ? *dflt : r);
      }
      return Value(std::move(out));
    }
    if (args.empty()) fail(line, "map needs a filter name or attribute=");
    std::string f = args[0].to_str();
    std::vector<Value> rest(args.begin() + 1, args.end());
    Kwargs none;
    for (auto x : iterate(v, line)) {
      auto r = rest;
      out.push_back(filter(f, x, r, none, line));
    }
    return Value(std::move(out));
  }
  if (name == "unique") {
    Array out;
    for (const auto& x : iterate(v, line))
      if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return y == x; })) out.push_back(x);
    return Value(std::move(out));
  }
  if (name == "sort" || name == "dictsort") {
    bool reverse = false, case_sensitive = false;
    if (const Value* r = arg(args, kw, name == "sort" ? 0 : 2, "reverse")) reverse = r->truthy();
    if (const Value* c = arg(args, kw, name == "sort" ? 1 : 0, "case_sensitive")) case_sensitive = c->truthy();
    Array a;
    std::string attribute;
    if (name == "dictsort") {
      a = filter("items", v, args, kw, line).array();
      attribute = "0";
      if (const Value* by = arg(args, kw, 1, "by"); by && by->to_str() == "value") attribute = "1";
    } else {
      a = iterate(v, line);
      if (const Value* at = arg(args, kw, 2, "attribute")) attribute = at->to_str();
    }
    std::stable_sort(a.begin(), a.end(), [&](const Value& x, const Value& y) {
      Value kx = attribute.empty() ? x : attr_path(x, attribute, line);
      Value ky = attribute.empty() ? y : attr_path(y, attribute, line);
      int c = py_compare(kx, ky, case_sensitive);
      return reverse ? c > 0 : c < 0;
    });
    return Value(std::move(a));
  }
  if (name == "min" || name == "max" || name == "sum") {
    Array a = iterate(v, line);
    if (name == "sum") {
      Value total = arg(args, kw, 1, "start") ? *arg(args, kw, 1, "start") : Value(static_cast<int64_t>(0));
      bool is_float = total.is_float();
      double f = total.as_double();
      int64_t i = total.as_int();
      for (const auto& x : a) {
        if (!x.is_number() && !x.is_bool()) fail(line, "sum of non-numbers");
        is_float = is_float || x.is_float();
        f += x.as_double();
        i += x.as_int();
      }
      return is_float ? Value(f) : Value(i);
    }
    if (a.empty()) return Value::undefined(name);
    Value best = a[0];
    for (const auto& x : a)
      if ((name == "min") == (py_compare(x, best, false) < 0)) best = x;
    return best;
  }
  if (name == "abs") {
    if (v.is_float()) return Value(std::fabs(v.as_double()));
    if (v.is_int()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
    fail(line, "abs needs a number");
  }
  if (name == "int") {
    if (v.is_int() || v.is_bool()) return Value(v.as_int());
    if (v.is_float()) return Value(static_cast<int64_t>(v.as_double()));
    if (v.is_string()) {
      try {
        return Value(static_cast<int64_t>(std::stoll(v.str())));
      } catch (...) {
      }
    }
    const Value* d = arg(args, kw, 0, "default");
    return d ? *d : Value(static_cast<int64_t>(0));
  }
  if (name == "float") {
    if (v.is_number() || v.is_bool()) return Value(v.as_double());
    if (v.is_string()) {
      try {
        return Value(std::stod(v.str()));
      } catch (...) {
      }
    }
    const Value* d = arg(args, kw, 0, "default");
    return d ? *d : Value(0.0);
  }
  if (name == "round") {
    const Value* p = arg(args, kw, 0, "precision");
    double scale = std::pow(10.0, p ? static_cast<double>(p->as_int()) : 0.0);
    return Value(std::round(v.as_double() * scale) / scale);
  }
  if (name == "indent") {
    const Value* w = arg(args, kw, 0, "width");
    const Value* first = arg(args, kw, 1, "first");
    const Value* blank = arg(args, kw, 2, "blank");
    std::string pad = w ? (w->is_string() ? w->str() : std::string(static_cast<size_t>(w->as_int()), ' ')) : "    ";
    std::string s = v.to_str(), out;
    size_t pos = 0;
    bool first_line = true;
    while (true) {
      size_t nl = s.find('\n', pos);
      std::string ln = s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      bool indent_it = first_line ? (first && first->truthy()) : (!ln.empty() || (blank && blank->truthy()));
      if (indent_it) out += pad;
      out += ln;
      if (nl == std::string::npos) break;
      out += '\n';
      pos = nl + 1;
      first_line = false;
    }
    return Value(out);
  }
  if (name == "escape" || name == "e") {
    std::string out;
    for (char c : v.to_str()) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    return Value(out);
  }
  fail(line, "unsupported filter '" + name + "'");
}

bool method(const Value& obj, const std::string& name, std::vector<Value>& args, Kwargs& kw, int line,
            Value& result) {
  auto a = [&](size_t i, const char* n) { return arg(args, kw, i, n); };
  if (obj.is_string()) {
    const std::string& s = obj.str();
    if (name == "startswith" || name == "endswith") {
      const Value* p = a(0, "prefix");
      if (!p) fail(line, name + "() needs an argument");
      std::vector<std::string> options;
      if (p->is_array()) {
        for (const auto& x : p->array()) options.push_back(x.to_str());
      } else {
        need_string(*p, name + "()", line);
        options.push_back(p->str());
      }
      bool r = false;
      for (const auto& o : options) {
        if (name == "startswith") r = r || s.compare(0, o.size(), o) == 0;
        else r = r || (s.size() >= o.size() && s.compare(s.size() - o.size(), o.size(), o) == 0);
      }
      result = Value(r);
      return true;
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      result = Value(strip(s, a(0, "chars"), name != "rstrip", name != "lstrip"));
      return true;
    }
    if (name == "split" || name == "rsplit") {
      const Value* m = a(1, "maxsplit");
      int64_t maxsplit = m ? m->as_int() : -1;
      if (name == "rsplit" && maxsplit >= 0) fail(line, "rsplit with maxsplit is not supported");
      result = Value(split(s, a(0, "sep"), maxsplit, line));
      return true;
    }
    if (name == "splitlines") {
      Array out;
      size_t pos = 0;
      while (pos < s.size()) {
        size_t nl = s.find_first_of("\r\n", pos);
        if (nl == std::string::npos) {
          out.emplace_back(s.substr(pos));
          break;
        }
        out.emplace_back(s.substr(pos, nl - pos));
        pos = nl + ((s[nl] == '\r' && nl + 1 < s.size() && s[nl + 1] == '\n') ? 2 : 1);
      }
      result = Value(std::move(out));
      return true;
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      Value self = obj;
      std::vector<Value> none;
      Kwargs nkw;
      result = filter(name, self, none, nkw, line);
      return true;
    }
    if (name == "replace") {
      if (args.size() < 2) fail(line, "replace() needs (old, new)");
      need_string(args[0], "replace()", line);
      need_string(args[1], "replace()", line);
      result = Value(replace_all(s, args[0].str(), args[1].str(), args.size() > 2 ? args[2].as_int() : -1));
      return true;
    }
    if (name == "find" || name == "rfind" || name == "count" || name == "index") {
      const Value* sub = a(0, "sub");
      if (!sub) fail(line, name + "() needs an argument");
      need_string(*sub, name + "()", line);
      if (name == "count") {
        int64_t n = 0;
        if (sub->str().empty()) {
          n = static_cast<int64_t>(to_u32(s).size()) + 1;
        } else {
          for (size_t p = s.find(sub->str()); p != std::string::npos; p = s.find(sub->str(), p + sub->str().size())) ++n;
        }
        result = Value(n);
        return true;
      }
      size_t p = name == "rfind" ? s.rfind(sub->str()) : s.find(sub->str());
      if (p == std::string::npos) {
        if (name == "index") fail(line, "substring not found");
        result = Value(static_cast<int64_t>(-1));
      } else {
        result = Value(static_cast<int64_t>(to_u32(s.substr(0, p)).size()));
      }
      return true;
    }
    if (name == "join") {
      const Value* it = a(0, "iterable");
      if (!it) fail(line, "join() needs an argument");
      std::string out;
      bool first = true;
      for (const auto& x : iterate(*it, line)) {
        if (!x.is_string()) fail(line, "join() items must be strings");
        if (!first) out += s;
        first = false;
        out += x.str();
      }
      result = Value(out);
      return true;
    }
    if (name == "removeprefix" || name == "removesuffix") {
      const Value* p = a(0, "prefix");
      if (!p) fail(line, name + "() needs an argument");
      std::string x = p->to_str(), r = s;
      if (name == "removeprefix" && s.compare(0, x.size(), x) == 0) r = s.substr(x.size());
      if (name == "removesuffix" && s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
        r = s.substr(0, s.size() - x.size());
      result = Value(r);
      return true;
    }
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
        name == "isupper") {
      std::u32string u = to_u32(s);
      bool r = !u.empty();
      bool cased = false;
      for (char32_t c : u) {
        bool digit = c >= '0' && c <= '9';
        std::string one = from_u32(std::u32string(1, c));
        bool lower = is_cased(c) && py_lower(one) == one, upper = is_cased(c) && py_upper(one) == one;
        cased = cased || lower || upper;
        if (name == "isdigit") r = r && digit;
        if (name == "isalpha") r = r && (lower || upper);
        if (name == "isalnum") r = r && (lower || upper || digit);
        if (name == "isspace") r = r && py_space(c);
        if (name == "islower") r = r && !upper;
        if (name == "isupper") r = r && !lower;
      }
      if (name == "islower" || name == "isupper") r = r && cased;
      result = Value(r);
      return true;
    }
    return false;
  }
  if (obj.is_object() && !obj.obj().is_namespace) {
    if (name == "items") {
      Value self = obj;
      std::vector<Value> none;
      Kwargs nkw;
      result = filter("items", self, none, nkw, line);
      return true;
    }
    if (name == "keys" || name == "values") {
      Array out;
      for (const auto& [k, x] : obj.obj().items) out.push_back(name == "keys" ? Value(k) : x);
      result = Value(std::move(out));
      return true;
    }
    if (name == "get") {
      const Value* k = a(0, "key");
      if (!k) fail(line, "get() needs a key");
      const Value* found = k->is_string() ? obj.obj().find(k->str()) : nullptr;
      const Value* d = a(1, "default");
      result = found ? *found : (d ? *d : Value::none());
      return true;
    }
    if (name == "update" || name == "pop" || name == "setdefault" || name == "clear" || name == "popitem")
      fail(line, "dict." + name + "() is not allowed: chat templates run in an immutable sandbox");
    return false;
  }
  if (obj.is_array()) {
    if (name == "index" || name == "count") {
      if (args.empty()) fail(line, name + "() needs an argument");
      int64_t n = 0, first = -1;
      for (size_t i = 0; i < obj.array().size(); ++i)
        if (obj.array()[i] == args[0]) {
          if (first < 0) first = static_cast<int64_t>(i);
          ++n;
        }
      if (name == "index" && first < 0) fail(line, "list.index(x): x not in list");
      result = Value(name == "index" ? first : n);
      return true;
    }
    if (name == "append" || name == "pop" || name == "extend" || name == "insert" || name == "remove" ||
        name == "sort" || name == "reverse" || name == "clear")
      fail(line, "list." + name + "() is not allowed: chat templates run in an immutable sandbox");
    return false;
  }
  return false;
}

}  // namespace sparrow::jinja::builtins
