// Tree-walking evaluator. Scopes: one frame for the template's top level, a fresh frame per
// for-loop iteration (so a {% set %} inside a loop does not leak out, as in Jinja; that is why
// templates use namespace()), and a frame per macro call.
#include "sparrow/tokenizer/jinja/interpreter.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <unordered_map>

#include "sparrow/core/error.h"

namespace sparrow::jinja {

namespace {

using builtins::fail;

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  explicit Interpreter(const Value& vars) {
    scopes_.emplace_back();
    auto& root = scopes_.back();
    install_globals(root);
    if (vars.is_object())
      for (const auto& [k, v] : vars.obj().items) root[k] = v;
  }

  std::string run(const Template& tpl) {
    std::string out;
    exec(tpl.body, out);
    return out;
  }

 private:
  using Scope = std::unordered_map<std::string, Value>;

  void install_globals(Scope& g) {
    g["range"] = Value::function([](std::vector<Value>& a, Kwargs&) {
      int64_t start = 0, stop = 0, step = 1;
      if (a.size() == 1) {
        stop = a[0].as_int();
      } else if (a.size() >= 2) {
        start = a[0].as_int();
        stop = a[1].as_int();
        if (a.size() >= 3) step = a[2].as_int();
      }
      if (step == 0) throw_input_error("chat template: range() step must not be zero");
      long double count = (static_cast<long double>(stop) - start) / step;
      if (count > 10'000'000) throw_input_error("chat template: range() of more than 10 million items");
      Array out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
      return Value(std::move(out));
    });
    g["namespace"] = Value::function([](std::vector<Value>& a, Kwargs& kw) {
      auto o = std::make_shared<Object>();
      o->is_namespace = true;
      for (auto& v : a)
        if (v.is_object())
          for (auto& [k, x] : v.obj().items) o->set(k, x);
      for (auto& [k, v] : kw) o->set(k, v);
      return Value(std::move(o));
    });
    g["dict"] = Value::function([](std::vector<Value>& a, Kwargs& kw) {
      auto o = std::make_shared<Object>();
      for (auto& v : a)
        if (v.is_object())
          for (auto& [k, x] : v.obj().items) o->set(k, x);
      for (auto& [k, v] : kw) o->set(k, v);
      return Value(std::move(o));
    });
    g["raise_exception"] = Value::function([](std::vector<Value>& a, Kwargs&) -> Value {
      throw_input_error("chat template: {}", a.empty() ? std::string("raise_exception") : a[0].to_str());
    });
    g["strftime_now"] = Value::function([](std::vector<Value>& a, Kwargs&) {
      std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      size_t n = std::strftime(buf, sizeof buf, a.empty() ? "%Y-%m-%d" : a[0].to_str().c_str(), &tm);
      return Value(std::string(buf, n));
    });
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undefined(name);
  }

  Flow exec(const Body& body, std::string& out) {
    for (const auto& s : body) {
      Flow f = exec(*s, out);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  void assign(const std::vector<std::string>& targets, const Value& v, int line) {
    Scope& scope = scopes_.back();
    if (targets.size() == 1) {
      scope[targets[0]] = v;
      return;
    }
    Array items = builtins::iterate(v, line);
    if (items.size() != targets.size())
      fail(line, "cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(targets.size()));
    for (size_t i = 0; i < targets.size(); ++i) scope[targets[i]] = items[i];
  }

  Flow exec(const Stmt& s, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        out += s.text;
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        out += eval(*s.expr).to_str();
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < s.bodies.size(); ++i) {
          if (i >= s.conditions.size() || eval(*s.conditions[i]).truthy()) return exec(s.bodies[i], out);
        }
        return Flow::kNormal;
      case Stmt::Kind::kFor:
        return exec_for(s, out);
      case Stmt::Kind::kSet: {
        Value v = eval(*s.expr);
        if (!s.attr.empty()) {
          Value target = lookup(s.targets[0]);
          if (!target.is_object() || !target.obj().is_namespace)
            fail(s.line, "can only set attributes of a namespace() object, not of '" + s.targets[0] + "'");
          target.obj().set(s.attr, std::move(v));
        } else {
          assign(s.targets, v, s.line);
        }
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        std::string captured;
        exec(s.body, captured);
        scopes_.back()[s.targets[0]] = Value(std::move(captured));
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        scopes_.back()[s.text] = make_macro(s);
        return Flow::kNormal;
      case Stmt::Kind::kBreak:
        if (loop_depth_ == 0) fail(s.line, "'break' outside a loop");
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        if (loop_depth_ == 0) fail(s.line, "'continue' outside a loop");
        return Flow::kContinue;
      case Stmt::Kind::kScope:
        return exec(s.body, out);
    }
    return Flow::kNormal;
  }

  Value make_macro(const Stmt& s) {
    const Stmt* def = &s;
    return Value::function([this, def](std::vector<Value>& args, Kwargs& kwargs) {
      // A macro sees the template's top-level names and its own parameters.
      std::vector<Scope> saved;
      saved.swap(scopes_);
      scopes_.push_back(saved.front());
      scopes_.emplace_back();
      int saved_depth = loop_depth_;
      loop_depth_ = 0;
      for (size_t i = 0; i < def->params.size(); ++i) {
        const auto& [name, dflt] = def->params[i];
        Value v;
        if (i < args.size()) {
          v = args[i];
        } else {
          bool found = false;
          for (auto& [k, x] : kwargs)
            if (k == name) {
              v = x;
              found = true;
            }
          if (!found) v = dflt ? eval(*dflt) : Value::undefined(name);
        }
        scopes_.back()[name] = v;
      }
      std::string out;
      try {
        exec(def->body, out);
      } catch (...) {
        scopes_.swap(saved);
        loop_depth_ = saved_depth;
        throw;
      }
      scopes_.swap(saved);
      loop_depth_ = saved_depth;
      return Value(std::move(out));
    });
  }

  Flow exec_for(const Stmt& s, std::string& out) {
    Array all = builtins::iterate(eval(*s.expr), s.line);
    Array items;
    if (s.filter) {
      for (auto& v : all) {
        scopes_.emplace_back();
        assign(s.targets, v, s.line);
        bool keep = eval(*s.filter).truthy();
        scopes_.pop_back();
        if (keep) items.push_back(v);
      }
    } else {
      items = std::move(all);
    }
    if (items.empty()) return exec(s.else_body, out);
    ++loop_depth_;
    const size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
      scopes_.emplace_back();
      assign(s.targets, items[i], s.line);
      auto loop = std::make_shared<Object>();
      loop->items = {{"index", Value(i + 1)},
                     {"index0", Value(i)},
                     {"revindex", Value(n - i)},
                     {"revindex0", Value(n - i - 1)},
                     {"first", Value(i == 0)},
                     {"last", Value(i + 1 == n)},
                     {"length", Value(n)},
                     {"previtem", i > 0 ? items[i - 1] : Value::undefined("previtem")},
                     {"nextitem", i + 1 < n ? items[i + 1] : Value::undefined("nextitem")}};
      loop->items.emplace_back("cycle", Value::function([i](std::vector<Value>& a, Kwargs&) {
                                 return a.empty() ? Value::undefined("cycle") : a[i % a.size()];
                               }));
      scopes_.back()["loop"] = Value(std::move(loop));
      Flow f;
      try {
        f = exec(s.body, out);
      } catch (...) {
        scopes_.pop_back();
        --loop_depth_;
        throw;
      }
      scopes_.pop_back();
      if (f == Flow::kBreak) break;
    }
    --loop_depth_;
    return Flow::kNormal;
  }

  std::vector<Value> eval_args(const Expr& e, size_t from) {
    std::vector<Value> out;
    for (size_t i = from; i < e.args.size(); ++i) out.push_back(eval(*e.args[i]));
    return out;
  }
  Kwargs eval_kwargs(const Expr& e) {
    Kwargs kw;
    for (const auto& [k, v] : e.kwargs) kw.emplace_back(k, eval(*v));
    return kw;
  }

  // Limits that keep a hostile or buggy template from exhausting memory or time.
  static constexpr uint64_t kMaxStringBytes = 64ull << 20;
  [[noreturn]] static void overflow(int line) {
    fail(line, "integer overflow (values beyond 64 bits are not supported)");
  }

  static void require_defined(const Value& v, int line) {
    if (v.is_undefined()) fail(line, "'" + v.str() + "' is undefined");
  }

  Value arith(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "~") return Value(a.to_str() + b.to_str());
    require_defined(a, line);
    require_defined(b, line);
    auto is_num = [](const Value& v) { return v.is_number() || v.is_bool(); };
    auto bad = [&]() -> Value {
      fail(line, "unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
    };
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(a.str() + b.str());
      if (a.is_array() && b.is_array()) {
        Array r = a.array();
        r.insert(r.end(), b.array().begin(), b.array().end());
        return Value(std::move(r));
      }
    }
    if (op == "*") {
      const Value* s = a.is_string() ? &a : b.is_string() ? &b : nullptr;
      const Value* n = a.is_string() ? &b : &a;
      if (s && (n->is_int() || n->is_bool())) {
        if (n->as_int() > 0 && s->str().size() * static_cast<uint64_t>(n->as_int()) > kMaxStringBytes)
          fail(line, "string repetition result is too large");
        std::string r;
        for (int64_t k = 0; k < n->as_int(); ++k) r += s->str();
        return Value(std::move(r));
      }
    }
    if (!is_num(a) || !is_num(b)) return bad();
    bool ints = !a.is_float() && !b.is_float();
    if (op == "/") {
      if (b.as_double() == 0) fail(line, "division by zero");
      return Value(a.as_double() / b.as_double());
    }
    if (op == "**") {
      if (ints && b.as_int() >= 0) {
        // exponentiation by squaring; Python would switch to a big integer on overflow
        int64_t base = a.as_int(), e = b.as_int(), r = 1;
        while (e > 0) {
          if ((e & 1) && __builtin_mul_overflow(r, base, &r)) overflow(line);
          e >>= 1;
          if (e > 0 && __builtin_mul_overflow(base, base, &base)) overflow(line);
        }
        return Value(r);
      }
      return Value(std::pow(a.as_double(), b.as_double()));
    }
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int(), r = 0;
      if (op == "+" && __builtin_add_overflow(x, y, &r)) overflow(line);
      if (op == "-" && __builtin_sub_overflow(x, y, &r)) overflow(line);
      if (op == "*" && __builtin_mul_overflow(x, y, &r)) overflow(line);
      if (op == "+" || op == "-" || op == "*") return Value(r);
      if (y == 0) fail(line, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) overflow(line);
      int64_t q = x / y;
      r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {  // Python floors
        --q;
        r += y;
      }
      if (op == "//") return Value(q);
      if (op == "%") return Value(r);
    } else {
      double x = a.as_double(), y = b.as_double();
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      if (y == 0) fail(line, "float division or modulo by zero");
      if (op == "//") return Value(std::floor(x / y));
      if (op == "%") {
        double r = std::fmod(x, y);
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return Value(r);
      }
    }
    return bad();
  }

  bool compare_less(const Value& a, const Value& b, int line) {
    if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) return a.as_double() < b.as_double();
    if (a.is_string() && b.is_string()) return a.str() < b.str();
    fail(line, "'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
  }

  bool contains(const Value& container, const Value& item, int line) {
    if (container.is_string()) {
      if (!item.is_string()) fail(line, "'in <string>' requires string as left operand");
      return container.str().find(item.str()) != std::string::npos;
    }
    if (container.is_array()) {
      for (const auto& v : container.array())
        if (v == item) return true;
      return false;
    }
    if (container.is_object()) return item.is_string() && container.obj().find(item.str()) != nullptr;
    if (container.is_undefined()) return false;
    fail(line, "argument of type '" + container.type_name() + "' is not iterable");
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.value;
      case Expr::Kind::kName:
        return lookup(e.name);
      case Expr::Kind::kList:
        return Value(eval_args(e, 0));
      case Expr::Kind::kTuple:
        return Value::tuple(eval_args(e, 0));
      case Expr::Kind::kDict: {
        auto o = std::make_shared<Object>();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i]);
          if (!k.is_string()) fail(e.line, "only string dict keys are supported");
          o->set(k.str(), eval(*e.args[i + 1]));
        }
        return Value(std::move(o));
      }
      case Expr::Kind::kGetAttr:
        return builtins::get_attr(eval(*e.args[0]), e.name, e.line);
      case Expr::Kind::kGetItem:
        return builtins::get_item(eval(*e.args[0]), eval(*e.args[1]), e.line);
      case Expr::Kind::kSlice:
        return slice(e);
      case Expr::Kind::kCall:
        return call(e);
      case Expr::Kind::kFilter: {
        Value target = eval(*e.args[0]);
        auto args = eval_args(e, 1);
        auto kw = eval_kwargs(e);
        return builtins::filter(e.name, target, args, kw, e.line);
      }
      case Expr::Kind::kTest: {
        Value target = eval(*e.args[0]);
        auto args = eval_args(e, 1);
        bool r = builtins::test(e.name, target, args, e.line);
        return Value(e.negated ? !r : r);
      }
      case Expr::Kind::kUnary: {
        Value v = eval(*e.args[0]);
        if (e.name == "not") return Value(!v.truthy());
        require_defined(v, e.line);
        if (!v.is_number() && !v.is_bool()) fail(e.line, "bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
        if (e.name == "+") return v.is_bool() ? Value(v.as_int()) : v;
        return v.is_float() ? Value(-v.as_double()) : Value(-v.as_int());
      }
      case Expr::Kind::kBinary: {
        Value a = eval(*e.args[0]);
        Value b = eval(*e.args[1]);
        const std::string& op = e.name;
        if (op == "==") return Value(a == b);
        if (op == "!=") return Value(!(a == b));
        if (op == "<") return Value(compare_less(a, b, e.line));
        if (op == ">") return Value(compare_less(b, a, e.line));
        if (op == "<=") return Value(!compare_less(b, a, e.line));
        if (op == ">=") return Value(!compare_less(a, b, e.line));
        if (op == "in") return Value(contains(b, a, e.line));
        if (op == "not in") return Value(!contains(b, a, e.line));
        return arith(op, a, b, e.line);
      }
      case Expr::Kind::kAnd: {
        Value a = eval(*e.args[0]);
        return a.truthy() ? eval(*e.args[1]) : a;
      }
      case Expr::Kind::kOr: {
        Value a = eval(*e.args[0]);
        return a.truthy() ? a : eval(*e.args[1]);
      }
      case Expr::Kind::kCond:
        if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("if-expression");
    }
    fail(e.line, "unsupported expression");
  }

  Value slice(const Expr& e) {
    Value target = eval(*e.args[0]);
    auto part = [&](int k, bool& present) -> int64_t {
      present = false;
      if (!e.args[k]) return 0;
      Value v = eval(*e.args[k]);
      if (v.is_none()) return 0;
      if (!v.is_int()) fail(e.line, "slice indices must be integers");
      present = true;
      return v.as_int();
    };
    bool has_start, has_stop, has_step;
    int64_t start = part(1, has_start), stop = part(2, has_stop), step = part(3, has_step);
    if (!has_step) step = 1;
    if (step == 0) fail(e.line, "slice step cannot be zero");
    auto indices = [&](int64_t n) {
      // Python's slice.indices()
      auto norm = [&](int64_t v, bool present, int64_t dflt) {
        if (!present) return dflt;
        if (v < 0) v += n;
        if (step > 0) return std::clamp<int64_t>(v, 0, n);
        return std::clamp<int64_t>(v, -1, n - 1);
      };
      int64_t b = norm(start, has_start, step > 0 ? 0 : n - 1);
      int64_t en = norm(stop, has_stop, step > 0 ? n : -1);
      std::vector<int64_t> idx;
      for (int64_t i = b; step > 0 ? i < en : i > en; i += step) idx.push_back(i);
      return idx;
    };
    if (target.is_array()) {
      const Array& a = target.array();
      Array out;
      for (int64_t i : indices(static_cast<int64_t>(a.size()))) out.push_back(a[i]);
      return Value(std::move(out));
    }
    if (target.is_string()) {
      std::u32string s = to_u32(target.str());
      std::u32string out;
      for (int64_t i : indices(static_cast<int64_t>(s.size()))) out.push_back(s[i]);
      return Value(from_u32(out));
    }
    require_defined(target, e.line);
    fail(e.line, "'" + target.type_name() + "' object is not subscriptable");
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.args[0];
    auto args = eval_args(e, 1);
    auto kw = eval_kwargs(e);
    if (callee.kind == Expr::Kind::kGetAttr) {
      Value obj = eval(*callee.args[0]);
      require_defined(obj, e.line);
      Value result;
      if (builtins::method(obj, callee.name, args, kw, e.line, result)) return result;
      Value f = builtins::get_attr(obj, callee.name, e.line);
      if (f.is_function()) return f.fn()(args, kw);
      if (f.is_undefined())
        fail(e.line, "'" + obj.type_name() + "' object has no method '" + callee.name + "' (or it is not supported)");
      fail(e.line, "'" + callee.name + "' is not callable");
    }
    Value f = eval(callee);
    if (f.is_function()) return f.fn()(args, kw);
    if (f.is_undefined()) fail(e.line, fmt::format("'{}' is undefined (unsupported function?)", f.str()));
    fail(e.line, fmt::format("'{}' object is not callable", f.type_name()));
  }

  std::vector<Scope> scopes_;
  int loop_depth_ = 0;
};

}  // namespace

std::string render(const Template& tpl, const Value& vars) { return Interpreter(vars).run(tpl); }

}  // namespace sparrow::jinja
