// Whitespace rules, in the order Jinja applies them:
//  - "{%-" / "{{-" / "{#-" strip all whitespace before the tag; "-%}" etc. strip all after.
//  - lstrip_blocks: spaces/tabs between the start of a line and a "{%" or "{#" are removed
//    (not for "{{", and not with "{%+").
//  - trim_blocks: one newline right after "%}" or "#}" is removed.
// Comments produce no tokens. Inside a tag, "}}" only closes the tag at brace depth 0 so dict
// literals work.
#include "sparrow/tokenizer/jinja/lexer.h"

#include <cctype>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/utf8.h"

namespace sparrow::jinja {

namespace {

[[noreturn]] void fail(int line, const std::string& msg) {
  throw_input_error("chat template: line {}: {}", line, msg);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Whitespace control strips what Python's \s / str.isspace() call whitespace, Unicode
// included (U+3000, U+00A0, ...). Returns the length of the whitespace character at s[i], or 0.
size_t space_len_at(const std::string& s, size_t i) {
  unsigned char c = s[i];
  if (c < 0x80) return (is_space(static_cast<char>(c)) || (c >= 0x1C && c <= 0x1F)) ? 1 : 0;
  size_t n = utf8::valid_sequence_length(s, i);
  if (!n) return 0;
  size_t j = i;
  char32_t cp = utf8::next(s, j);
  bool ws = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
            cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
  return ws ? n : 0;
}

size_t skip_spaces(const std::string& s, size_t i) {
  while (i < s.size()) {
    size_t n = space_len_at(s, i);
    if (!n) break;
    i += n;
  }
  return i;
}

// Start of the trailing whitespace of s.
size_t trailing_spaces_start(const std::string& s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && end - start < 4) --start;
    if (space_len_at(s, start) != end - start) break;
    end = start;
  }
  return end;
}

class Lexer {
 public:
  explicit Lexer(const std::string& s) : src_(s) {}

  std::vector<Token> run() {
    char end_sign = 0;         // '-' or '+' if the previous tag closed with "-%}" / "+%}"
    bool after_block = false;  // previous tag was {% %} or {# #} (trim_blocks applies)
    while (pos_ < src_.size()) {
      // What the previous tag's closing consumed after itself.
      size_t text_start = pos_;
      if (end_sign == '-') {
        text_start = skip_spaces(src_, text_start);
      } else if (after_block && end_sign != '+') {
        if (src_.compare(text_start, 2, "\r\n") == 0) {
          text_start += 2;
        } else if (text_start < src_.size() && src_[text_start] == '\n') {
          ++text_start;
        }
      }
      count_lines(pos_, text_start);
      bool line_starting = text_start == 0 || src_[text_start - 1] == '\n';
      size_t tag = find_tag(text_start);
      std::string text = src_.substr(text_start, tag - text_start);
      int text_line = line_;
      count_lines(text_start, tag);
      pos_ = tag;
      char kind = 0, open_sign = 0;
      if (tag < src_.size()) {
        kind = src_[tag + 1];
        if (tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+')) open_sign = src_[tag + 2];
      }
      if (open_sign == '-') {
        text.erase(trailing_spaces_start(text));
      } else if (kind && kind != '{' && open_sign != '+') {
        // lstrip_blocks: drop blanks between the line start and a block or comment tag.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 || line_starting) {
          bool blank = l_pos < text.size() && skip_spaces(text, l_pos) == text.size();
          if (blank) text.erase(l_pos);
        }
      }
      if (!text.empty()) tokens_.push_back(Token{Token::Kind::kText, text, text_line});
      if (tag >= src_.size()) break;
      pos_ = tag + 2 + (open_sign ? 1 : 0);
      after_block = kind != '{';
      if (kind == '#') {
        size_t end = src_.find("#}", pos_);
        if (end == std::string::npos) fail(line_, "unclosed comment");
        end_sign = (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : 0;
        count_lines(pos_, end + 2);
        pos_ = end + 2;
        continue;
      }
      bool is_stmt = kind == '%';
      tokens_.push_back(Token{is_stmt ? Token::Kind::kStmtOpen : Token::Kind::kExprOpen, "", line_});
      lex_tag(is_stmt, end_sign);
    }
    tokens_.push_back(Token{Token::Kind::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i)
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return src_.size();
  }

  void count_lines(size_t a, size_t b) {
    for (size_t i = a; i < b && i < src_.size(); ++i)
      if (src_[i] == '\n') ++line_;
  }

  void lex_tag(bool is_stmt, char& end_sign) {
    int depth = 0;
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) fail(line_, is_stmt ? "unclosed {%" : "unclosed {{");
      // closing marker?
      auto closes = [&](size_t at) {
        return is_stmt ? src_.compare(at, 2, "%}") == 0 : (depth == 0 && src_.compare(at, 2, "}}") == 0);
      };
      if ((src_[pos_] == '-' || src_[pos_] == '+') && pos_ + 1 < src_.size() && closes(pos_ + 1)) {
        end_sign = src_[pos_];
        pos_ += 3;
        break;
      }
      if (closes(pos_)) {
        end_sign = 0;
        pos_ += 2;
        break;
      }
      char c = src_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t s = pos_;
        while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
        tokens_.push_back(Token{Token::Kind::kName, src_.substr(s, pos_ - s), line_});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t s = pos_;
        bool is_float = false;
        while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
        if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
          is_float = true;
          ++pos_;
          while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
        }
        if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
          size_t k = pos_ + 1;
          if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
          if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
            is_float = true;
            pos_ = k;
            while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
          }
        }
        std::string num;
        for (size_t k = s; k < pos_; ++k)
          if (src_[k] != '_') num += src_[k];
        tokens_.push_back(Token{is_float ? Token::Kind::kFloat : Token::Kind::kInt, num, line_});
      } else if (c == '\'' || c == '"') {
        tokens_.push_back(Token{Token::Kind::kString, lex_string(c), line_});
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                     "=",  ".",  ",",  ":",  "|",  "(", ")", "[", "]", "{", "}"};
        bool found = false;
        for (const char* op : kOps) {
          size_t n = std::char_traits<char>::length(op);
          if (src_.compare(pos_, n, op) == 0) {
            if (op[0] == '{' && n == 1) ++depth;
            if (op[0] == '}' && n == 1) --depth;
            tokens_.push_back(Token{Token::Kind::kOp, op, line_});
            pos_ += n;
            found = true;
            break;
          }
        }
        if (!found) fail(line_, std::string("unexpected character '") + c + "' in tag");
      }
    }
    tokens_.push_back(Token{is_stmt ? Token::Kind::kStmtClose : Token::Kind::kExprClose, "", line_});
  }

  std::string lex_string(char quote) {
    std::string out;
    ++pos_;
    while (pos_ < src_.size() && src_[pos_] != quote) {
      char c = src_[pos_++];
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= src_.size()) break;
      char e = src_[pos_++];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case '\n':  // line continuation
          ++line_;
          break;
        default:
          // Python keeps unknown escapes verbatim.
          out += '\\';
          out += e;
      }
    }
    if (pos_ >= src_.size()) fail(line_, "unterminated string literal");
    ++pos_;
    return out;
  }

  const std::string& src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(const std::string& source) {
  // Jinja (newline_sequence="\n", keep_trailing_newline=False): \r\n and \r in the template
  // source become \n, and one newline at the very end is dropped.
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(src).run();
}

}  // namespace sparrow::jinja
