// Chat templates against transformers' apply_chat_template(tokenize=False) goldens for
// Qwen3, Qwen2.5 and DeepSeek-V3, plus unit tests of the Jinja subset.
#include <gtest/gtest.h>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/chat_template.h"
#include "tokenizer_test_util.h"

namespace sparrow {
namespace {

using nlohmann::ordered_json;
using testing::read_json;
using testing::read_text;
using testing::testdata;
using testing::tokenizer;

TEST(ChatTemplateGolden, MatchesTransformers) {
  auto golden = read_json("tokenizers/goldens/chat_templates.json");
  std::string qwen25 = read_text(testdata("tokenizers/qwen2_5_chat_template.jinja"));
  ChatTemplate qwen25_tpl(qwen25);
  int checked = 0;
  for (const auto& c : golden) {
    std::string name = c["template"];
    std::string label = name + " / " + c["label"].get<std::string>() + " / agp=" +
                        (c["add_generation_prompt"].get<bool>() ? "1" : "0") + " / " + c["kwargs"].dump();
    const Tokenizer& tok = tokenizer(name == "deepseek_v3" ? "deepseek_v3" : "qwen3");
    auto render = [&]() {
      if (name == "qwen2_5") {
        ordered_json vars = c["kwargs"];
        vars["eos_token"] = tok.eos_token();
        vars["pad_token"] = tok.pad_token();
        return qwen25_tpl.render(c["messages"], c["tools"], c["add_generation_prompt"], vars);
      }
      return tok.apply_chat_template(c["messages"], c["tools"], c["add_generation_prompt"], c["kwargs"]);
    };
    if (c.contains("error")) {
      EXPECT_THROW(render(), InputError) << label;
      continue;
    }
    std::string rendered;
    ASSERT_NO_THROW(rendered = render()) << label;
    EXPECT_EQ(rendered, c["rendered"].get<std::string>()) << label;
    EXPECT_EQ(tok.encode(rendered), c["ids"].get<std::vector<int32_t>>()) << label;
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

std::string render(const std::string& tpl, const ordered_json& vars = ordered_json::object()) {
  return render_chat_template(tpl, ordered_json::array({{{"role", "user"}, {"content", "hi"}}}), nullptr, false, vars);
}

TEST(JinjaSubset, ExpressionsAndFilters) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}"), "7|3|2|3.5|1024");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }}|{{ [1, 'x', none, true] }}|{{ {'k': 1.0} }}"),
            "a1None|[1, 'x', None, True]|{'k': 1.0}");
  EXPECT_EQ(render("{{ 'Hello'[::-1] }}|{{ [1,2,3,4][1:3] }}|{{ 'héllo'[1] }}|{{ 'abc'[-1] }}"), "olleH|[2, 3]|é|c");
  EXPECT_EQ(render("{{ '  x  ' | trim }}|{{ 'AbC' | lower }}{{ 'AbC' | upper }}|{{ [1,2] | length }}"),
            "x|abcABC|2");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'xxhixx'.strip('x') }}"),
            "['a', 'b', '', 'c']|['a', 'b']|hi");
  EXPECT_EQ(render("{{ {'b': 1, 'a': [1, 2.5, 'é\"']} | tojson }}"), R"({"b": 1, "a": [1, 2.5, "é\""]})");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | tojson(indent=2, sort_keys=true) }}"), "{\n  \"a\": 2,\n  \"b\": 1\n}");
  EXPECT_EQ(render("{{ x | default('d') }}|{{ 1 if false }}|{{ 'y' if true else 'n' }}"), "d||y");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }}{% if not loop.last %},{% endif %}{% endfor %}"),
            "a=1,b=2");
  EXPECT_EQ(render("{{ [{'t': 'a'}, {'t': 'b'}] | selectattr('t', 'equalto', 'b') | list | length }}"), "1");
  EXPECT_EQ(render("{{ [{'n': 'a'}, {'n': 'b'}] | map(attribute='n') | join('+') }}"), "a+b");
  EXPECT_EQ(render("{{ 1e-5 }} {{ 1.5e16 }} {{ 100.0 }} {{ 0.1 + 0.2 }}"), "1e-05 1.5e+16 100.0 0.30000000000000004");
}

TEST(JinjaSubset, StatementsAndScopes) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in range(3) %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in range(3) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"),
            "4");
  EXPECT_EQ(render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}"
                   "{{ i }}{% endfor %}"),
            "02");
  EXPECT_EQ(render("{% for i in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for i in range(4) if i is odd %}{{ loop.index }}:{{ i }} {% endfor %}"), "1:1 2:3 ");
  EXPECT_EQ(render("{% macro greet(name, p='Hi') %}{{ p }} {{ name }}{% endmacro %}{{ greet('A') }}/{{ greet('B', p='Yo') }}"),
            "Hi A/Yo B");
  EXPECT_EQ(render("{% set s %}block {{ 1 }}{% endset %}[{{ s }}]"), "[block 1]");
  // whitespace control with trim_blocks / lstrip_blocks as transformers configures Jinja
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(render("a   {%- if true -%}   b   {%- endif -%}   c"), "abc");
  EXPECT_EQ(render("{# comment #}\nx{{- ' y ' -}}\nz"), "x y z");
  EXPECT_EQ(render("  {% if true %}x{% endif %}  {% if true %}y{% endif %}\n  z {{ 'q' }}  {% if true %}w{% endif %}"),
            "x  y  z q  w");
  // a {% set %} inside a loop body lives for one iteration only
  EXPECT_EQ(render("{% for i in [1,2] %}{% if i == 1 %}{% set y = 'a' %}{% endif %}[{{ y }}]{% endfor %}"), "[a][]");
}

TEST(JinjaSubset, ErrorsAreInputErrors) {
  EXPECT_THROW(render("{{ raise_exception('bad input') }}"), InputError);
  EXPECT_THROW(render("{{ x | no_such_filter }}"), InputError);
  EXPECT_THROW(render("{% include 'x' %}"), InputError);
  EXPECT_THROW(render("{{ undefined_thing.attr }}"), InputError);
  EXPECT_THROW(render("{{ 'a' + undefined_thing }}"), InputError);
  EXPECT_THROW(render("{% if x %}"), InputError);
  EXPECT_THROW(render("{{ 2 ** 64 }}"), InputError);  // Python has big ints; we refuse clearly
  EXPECT_THROW(render("{{ 9223372036854775807 + 1 }}"), InputError);
  EXPECT_THROW(render("{{ 99999999999999999999 }}"), InputError);
  EXPECT_THROW(render("{{ 1e999 }}"), InputError);
  EXPECT_EQ(render("{{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 3 ** 0 }}"), "4611686018427387904 -9223372036854775808 1");
  EXPECT_THROW(render("{{ 'x' * 1000000000000 }}"), InputError);
  EXPECT_THROW(render("{% for i in range(1000000000000) %}{% endfor %}"), InputError);
  EXPECT_THROW(render("{{ 'unterminated }}"), InputError);
  try {
    render("line1\n{{ x | frobnicate }}");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("frobnicate"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, AcceptsPlainJson) {
  // Callers holding nlohmann::json (keys sorted) can pass it directly; it converts implicitly.
  nlohmann::json messages = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  EXPECT_EQ(tokenizer("qwen3").apply_chat_template(messages, nullptr, true, nlohmann::json{{"enable_thinking", false}}),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplate, TokenizerWithoutTemplate) {
  auto tok = Tokenizer::from_json(nlohmann::json::parse(read_text(testdata("tokenizers/qwen3/tokenizer.json"))));
  EXPECT_FALSE(tok->has_chat_template());
  EXPECT_THROW(tok->apply_chat_template(ordered_json::array({{{"role", "user"}, {"content", "x"}}}), nullptr, true),
               InputError);
}

}  // namespace
}  // namespace sparrow

namespace sparrow {
namespace {

// Differential test: each snippet was rendered by transformers' Jinja environment.
TEST(JinjaSnippetGolden, MatchesJinja2) {
  auto golden = testing::read_json("tokenizers/goldens/jinja_snippets.json");
  const auto& vars = golden["vars"];
  for (const auto& c : golden["cases"]) {
    std::string src = c["template"];
    ChatTemplate tpl = [&] {
      try {
        return ChatTemplate(src);
      } catch (const InputError& e) {
        ADD_FAILURE() << src << "\n  parse error: " << e.what();
        return ChatTemplate("");
      }
    }();
    // render() requires messages; the snippets read their own variables from kwargs.
    auto msgs = ordered_json::array({{{"role", "user"}, {"content", "x"}}});
    if (c.contains("error")) {
      EXPECT_THROW(tpl.render(msgs, nullptr, false, vars), InputError) << src << "\n  jinja2: " << c["error"];
      continue;
    }
    try {
      EXPECT_EQ(tpl.render(msgs, nullptr, false, vars), c["rendered"].get<std::string>()) << src;
    } catch (const InputError& e) {
      ADD_FAILURE() << src << "\n  error: " << e.what();
    }
  }
}

}  // namespace
}  // namespace sparrow
