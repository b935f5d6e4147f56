// Recursive-descent parser following Jinja's grammar and operator precedence (lowest first):
// conditional (a if b else c) < or < and < not < comparison / in / is-test < ~ < + - <
// * / // % < ** < unary - < postfix (.attr [item] (call) |filter).
#include <set>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/jinja/ast.h"
#include "sparrow/tokenizer/jinja/lexer.h"

namespace sparrow::jinja {

namespace {

using K = Token::Kind;

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  std::shared_ptr<const Template> run() {
    auto tpl = std::make_shared<Template>();
    std::string end = parse_body(tpl->body, {});
    if (!end.empty()) fail(line(), "unexpected '{% " + end + " %}'");
    return tpl;
  }

 private:
  [[noreturn]] void fail(int ln, const std::string& msg) const {
    throw_input_error("chat template: line {}: {}", ln, msg);
  }
  const Token& peek(size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  int line() const { return peek().line; }
  bool is_op(const char* op, size_t k = 0) const { return peek(k).kind == K::kOp && peek(k).text == op; }
  bool is_name(const char* n, size_t k = 0) const { return peek(k).kind == K::kName && peek(k).text == n; }
  Token next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(line(), std::string("expected '") + op + "', got '" + peek().text + "'");
    ++i_;
  }
  std::string expect_name() {
    if (peek().kind != K::kName) fail(line(), "expected a name, got '" + peek().text + "'");
    return next().text;
  }
  void expect_stmt_close() {
    if (peek().kind != K::kStmtClose) fail(line(), "expected '%}', got '" + peek().text + "'");
    ++i_;
  }

  // Parses statements until one of `ends` (a block keyword like "endif") is seen at the start
  // of a {% %} tag; returns that keyword (consumed, tag left open) or "" at end of input.
  std::string parse_body(Body& body, const std::set<std::string>& ends) {
    while (true) {
      const Token& tok = peek();
      if (tok.kind == K::kEnd) return "";
      if (tok.kind == K::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = tok.line;
        s->text = tok.text;
        body.push_back(std::move(s));
        ++i_;
        continue;
      }
      if (tok.kind == K::kExprOpen) {
        ++i_;
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = tok.line;
        s->expr = parse_expression_tuple();
        if (peek().kind != K::kExprClose) fail(line(), "expected '}}', got '" + peek().text + "'");
        ++i_;
        body.push_back(std::move(s));
        continue;
      }
      if (tok.kind != K::kStmtOpen) fail(tok.line, "unexpected token '" + tok.text + "'");
      ++i_;
      std::string kw = peek().kind == K::kName ? peek().text : "";
      if (ends.count(kw)) {
        ++i_;
        return kw;
      }
      body.push_back(parse_statement());
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    int ln = line();
    std::string kw = expect_name();
    auto s = std::make_unique<Stmt>();
    s->line = ln;
    if (kw == "if") {
      s->kind = Stmt::Kind::kIf;
      s->conditions.push_back(parse_expression_tuple());
      expect_stmt_close();
      while (true) {
        s->bodies.emplace_back();
        std::string end = parse_body(s->bodies.back(), {"elif", "else", "endif"});
        if (end == "elif") {
          s->conditions.push_back(parse_expression_tuple());
          expect_stmt_close();
        } else if (end == "else") {
          expect_stmt_close();
          s->bodies.emplace_back();
          if (parse_body(s->bodies.back(), {"endif"}) != "endif") fail(ln, "'if' without 'endif'");
          expect_stmt_close();
          break;
        } else if (end == "endif") {
          expect_stmt_close();
          break;
        } else {
          fail(ln, "'if' without 'endif'");
        }
      }
    } else if (kw == "for") {
      s->kind = Stmt::Kind::kFor;
      s->targets.push_back(expect_name());
      while (is_op(",")) {
        ++i_;
        s->targets.push_back(expect_name());
      }
      if (!is_name("in")) fail(line(), "expected 'in' in for loop");
      ++i_;
      s->expr = parse_expression(/*no_cond=*/true);
      if (is_name("if")) {
        ++i_;
        s->filter = parse_expression();
      }
      if (is_name("recursive")) fail(line(), "recursive for loops are not supported");
      expect_stmt_close();
      std::string end = parse_body(s->body, {"else", "endfor"});
      if (end == "else") {
        expect_stmt_close();
        end = parse_body(s->else_body, {"endfor"});
      }
      if (end != "endfor") fail(ln, "'for' without 'endfor'");
      expect_stmt_close();
    } else if (kw == "set") {
      std::string name = expect_name();
      if (is_op(".")) {
        ++i_;
        s->kind = Stmt::Kind::kSet;
        s->targets.push_back(name);
        s->attr = expect_name();
        expect_op("=");
        s->expr = parse_expression_tuple();
        expect_stmt_close();
      } else if (peek().kind == K::kStmtClose) {
        s->kind = Stmt::Kind::kSetBlock;
        s->targets.push_back(name);
        ++i_;
        if (parse_body(s->body, {"endset"}) != "endset") fail(ln, "'set' block without 'endset'");
        expect_stmt_close();
      } else {
        s->kind = Stmt::Kind::kSet;
        s->targets.push_back(name);
        while (is_op(",")) {
          ++i_;
          s->targets.push_back(expect_name());
        }
        expect_op("=");
        s->expr = parse_expression_tuple();
        expect_stmt_close();
      }
    } else if (kw == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->text = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        std::string p = expect_name();
        ExprPtr def;
        if (is_op("=")) {
          ++i_;
          def = parse_expression();
        }
        s->params.emplace_back(p, std::move(def));
        if (!is_op(",")) break;
        ++i_;
      }
      expect_op(")");
      expect_stmt_close();
      if (parse_body(s->body, {"endmacro"}) != "endmacro") fail(ln, "'macro' without 'endmacro'");
      if (peek().kind == K::kName) ++i_;  // {% endmacro name %}
      expect_stmt_close();
    } else if (kw == "break" || kw == "continue") {
      s->kind = kw == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      expect_stmt_close();
    } else if (kw == "generation") {  // transformers' assistant-mask extension: render the body
      s->kind = Stmt::Kind::kScope;
      expect_stmt_close();
      if (parse_body(s->body, {"endgeneration"}) != "endgeneration") fail(ln, "'generation' without 'endgeneration'");
      expect_stmt_close();
    } else {
      fail(ln, "unsupported statement '{% " + kw + " %}'");
    }
    return s;
  }

  // Number literals; values beyond 64-bit / double range are refused (Python has big ints).
  int64_t to_int(const Token& t) const {
    try {
      return std::stoll(t.text);
    } catch (const std::logic_error&) {
      fail(t.line, "integer literal " + t.text + " does not fit in 64 bits");
    }
  }
  double to_double(const Token& t) const {
    try {
      return std::stod(t.text);
    } catch (const std::logic_error&) {
      fail(t.line, "float literal " + t.text + " is out of range");
    }
  }

  ExprPtr make(Expr::Kind kind, int ln) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = ln;
    return e;
  }

  // A bare tuple "a, b" is allowed at the top of {{ }}, if and set values.
  ExprPtr parse_expression_tuple() {
    int ln = line();
    ExprPtr first = parse_expression();
    if (!is_op(",")) return first;
    auto t = make(Expr::Kind::kTuple, ln);
    t->args.push_back(std::move(first));
    while (is_op(",")) {
      ++i_;
      if (peek().kind == K::kStmtClose || peek().kind == K::kExprClose) break;
      t->args.push_back(parse_expression());
    }
    return t;
  }

  ExprPtr parse_expression(bool no_cond = false) {
    ExprPtr e = parse_or();
    if (no_cond) return e;
    while (is_name("if")) {
      int ln = line();
      ++i_;
      auto c = make(Expr::Kind::kCond, ln);
      c->args.push_back(std::move(e));
      c->args.push_back(parse_or());
      if (is_name("else")) {
        ++i_;
        c->args.push_back(parse_expression());
      } else {
        c->args.push_back(nullptr);
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      auto b = make(Expr::Kind::kOr, line());
      ++i_;
      b->args.push_back(std::move(e));
      b->args.push_back(parse_and());
      e = std::move(b);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      auto b = make(Expr::Kind::kAnd, line());
      ++i_;
      b->args.push_back(std::move(e));
      b->args.push_back(parse_not());
      e = std::move(b);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto u = make(Expr::Kind::kUnary, line());
      ++i_;
      u->name = "not";
      u->args.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr e = parse_concat();
    while (true) {
      std::string op;
      if (peek().kind == K::kOp && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                    peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        op = peek().text;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && is_name("in", 1)) {
        op = "not in";
        i_ += 2;
      } else {
        break;
      }
      auto b = make(Expr::Kind::kBinary, line());
      b->name = op;
      b->args.push_back(std::move(e));
      b->args.push_back(parse_concat());
      e = std::move(b);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, int ln) {
    auto b = make(Expr::Kind::kBinary, ln);
    b->name = op;
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return b;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math1();
    while (is_op("~")) {
      int ln = line();
      ++i_;
      e = binary("~", std::move(e), parse_math1(), ln);
    }
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_math2();
    while (is_op("+") || is_op("-")) {
      int ln = line();
      std::string op = next().text;
      e = binary(op, std::move(e), parse_math2(), ln);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      int ln = line();
      std::string op = next().text;
      e = binary(op, std::move(e), parse_pow(), ln);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary();
    while (is_op("**")) {
      int ln = line();
      ++i_;
      e = binary("**", std::move(e), parse_unary(), ln);
    }
    return e;
  }

  // As Jinja: a unary sign takes the operand without its filters, and the filters then apply
  // to the signed value ("-3 | abs" is 3).
  ExprPtr parse_unary(bool with_filters = true) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto u = make(Expr::Kind::kUnary, line());
      u->name = next().text;
      u->args.push_back(parse_unary(false));
      e = std::move(u);
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filters ? parse_filters_and_tests(std::move(e)) : std::move(e);
  }

  ExprPtr parse_filters_and_tests(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        auto f = make(Expr::Kind::kFilter, line());
        ++i_;
        f->name = expect_name();
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        auto t = make(Expr::Kind::kTest, line());
        ++i_;
        if (is_name("not")) {
          t->negated = true;
          ++i_;
        }
        t->name = expect_name();
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (peek().kind == K::kString || peek().kind == K::kInt || peek().kind == K::kFloat ||
                   (peek().kind == K::kName && !is_name("and") && !is_name("or") && !is_name("if") &&
                    !is_name("else") && !is_name("in") && !is_name("not") && !is_name("is"))) {
          t->args.push_back(parse_postfix(parse_primary()));  // "is divisibleby 3", "is sameas false"
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == K::kName && is_op("=", 1)) {
        std::string k = next().text;
        ++i_;
        call.kwargs.emplace_back(k, parse_expression());
      } else {
        if (is_op("*")) fail(line(), "*args in calls is not supported");
        call.args.push_back(parse_expression());
      }
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      int ln = line();
      if (is_op(".")) {
        ++i_;
        auto g = make(Expr::Kind::kGetAttr, ln);
        if (peek().kind == K::kInt) {  // foo.0 is foo[0]
          g->kind = Expr::Kind::kGetItem;
          g->args.push_back(std::move(e));
          auto lit = make(Expr::Kind::kLiteral, ln);
          lit->value = Value(to_int(next()));
          g->args.push_back(std::move(lit));
        } else {
          g->name = expect_name();
          g->args.push_back(std::move(e));
        }
        e = std::move(g);
      } else if (is_op("[")) {
        ++i_;
        ExprPtr parts[3];
        bool is_slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!is_op(":") && !is_op("]")) parts[k] = parse_expression();
          if (k < 2 && is_op(":")) {
            is_slice = true;
            ++i_;
          } else {
            break;
          }
        }
        expect_op("]");
        auto g = make(is_slice ? Expr::Kind::kSlice : Expr::Kind::kGetItem, ln);
        g->args.push_back(std::move(e));
        if (is_slice) {
          for (auto& p : parts) g->args.push_back(std::move(p));
        } else {
          if (!parts[0]) fail(ln, "empty subscript");
          g->args.push_back(std::move(parts[0]));
        }
        e = std::move(g);
      } else if (is_op("(")) {
        auto c = make(Expr::Kind::kCall, ln);
        c->args.push_back(std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_primary() {
    const Token& tok = peek();
    int ln = tok.line;
    switch (tok.kind) {
      case K::kString: {
        auto lit = make(Expr::Kind::kLiteral, ln);
        std::string s;
        while (peek().kind == K::kString) s += next().text;  // adjacent literals concatenate
        lit->value = Value(std::move(s));
        return lit;
      }
      case K::kInt: {
        auto lit = make(Expr::Kind::kLiteral, ln);
        lit->value = Value(to_int(next()));
        return lit;
      }
      case K::kFloat: {
        auto lit = make(Expr::Kind::kLiteral, ln);
        lit->value = Value(to_double(next()));
        return lit;
      }
      case K::kName: {
        std::string n = next().text;
        auto lit = make(Expr::Kind::kLiteral, ln);
        if (n == "true" || n == "True") {
          lit->value = Value(true);
        } else if (n == "false" || n == "False") {
          lit->value = Value(false);
        } else if (n == "none" || n == "None") {
          lit->value = Value::none();
        } else {
          lit->kind = Expr::Kind::kName;
          lit->name = n;
        }
        return lit;
      }
      case K::kOp:
        if (tok.text == "(") {
          ++i_;
          if (is_op(")")) {
            ++i_;
            return make(Expr::Kind::kTuple, ln);
          }
          ExprPtr e = parse_expression();
          if (is_op(",")) {
            auto t = make(Expr::Kind::kTuple, ln);
            t->args.push_back(std::move(e));
            while (is_op(",")) {
              ++i_;
              if (is_op(")")) break;
              t->args.push_back(parse_expression());
            }
            e = std::move(t);
          }
          expect_op(")");
          return e;
        }
        if (tok.text == "[") {
          ++i_;
          auto l = make(Expr::Kind::kList, ln);
          while (!is_op("]")) {
            l->args.push_back(parse_expression());
            if (!is_op(",")) break;
            ++i_;
          }
          expect_op("]");
          return l;
        }
        if (tok.text == "{") {
          ++i_;
          auto d = make(Expr::Kind::kDict, ln);
          while (!is_op("}")) {
            d->args.push_back(parse_expression());
            expect_op(":");
            d->args.push_back(parse_expression());
            if (!is_op(",")) break;
            ++i_;
          }
          expect_op("}");
          return d;
        }
        break;
      default:
        break;
    }
    fail(ln, "unexpected '" + tok.text + "' in expression");
  }

  std::vector<Token> t_;
  size_t i_ = 0;
};

}  // namespace

std::shared_ptr<const Template> parse(const std::string& source) { return Parser(lex(source)).run(); }

}  // namespace sparrow::jinja
