#!/usr/bin/env python3
"""Golden outputs of Hugging Face `tokenizers` / `transformers` for Sparrow's tokenizer tests.

Sparrow's C++ tokenizer (src/sparrow/tokenizer/) must reproduce Hugging Face exactly. This
script writes what HF produces for a fixed set of inputs; tests/tokenizer/*_test.cpp read it.

Regenerate (from the repository root, needs `tokenizers`, `transformers`, `jinja2`):

    python3 python/make_tokenizer_goldens.py

It reads tests/testdata/tokenizers/{qwen3,deepseek_v3}/ (tokenizer.json, tokenizer_config.json),
tests/testdata/corpus/persuasion.txt and tests/testdata/tokenizers/qwen2_5_chat_template.jinja,
and writes, per tokenizer NAME:

  tests/testdata/tokenizers/goldens/NAME_corpus.json   ids of every line of persuasion.txt
      (lines referenced by index: the text lives once, in the corpus file)
  tests/testdata/tokenizers/goldens/NAME_cases.json    hand-picked inputs (multilingual, emoji,
      whitespace, digits, code, special-token text, NFC cases, empty, 100 KB) with ids for
      parse_special true/false and HF decode with and without skip_special_tokens; random id
      sequences with their HF decode (exercises U+FFFD replacement)
  tests/testdata/tokenizers/goldens/jinja_snippets.json  small templates rendered by
      transformers' own Jinja environment (trim_blocks, lstrip_blocks, its tojson...): a
      differential test of each construct of our Jinja subset; "error" where Jinja raises
  tests/testdata/tokenizers/flags/tokenizer.json + goldens/flags_cases.json  a small BPE
      tokenizer built here (the first 3000 Qwen merges, Qwen's normalizer and pre-tokenizer)
      whose added tokens use lstrip / rstrip / single_word / normalized, flags the two real
      tokenizers leave off, with HF's ids for inputs that exercise them
  tests/testdata/tokenizers/goldens/chat_templates.json  transformers apply_chat_template(
      tokenize=False) for a set of conversations, for qwen3, deepseek_v3 and qwen2_5; where
      transformers raises (e.g. DeepSeek-V3's template on a tool-call turn whose content is None,
      which transformers drops before rendering), the case records "error" instead

JSON is written compactly (no spaces) to keep the committed files small.
"""
import json
import os
import random

from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TD = os.path.join(ROOT, "tests", "testdata")
TOK = os.path.join(TD, "tokenizers")
OUT = os.path.join(TOK, "goldens")


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def corpus_lines():
    with open(os.path.join(TD, "corpus", "persuasion.txt"), encoding="utf-8") as f:
        return f.read().split("\n")


def hand_cases():
    rng = random.Random(1234)
    corpus = "\n".join(corpus_lines())
    cases = [
        "",
        " ",
        "Hello world",
        "Hello, world! How's it going? I'm fine; they'll see, we'd've DON'T it's",
        "HELLO'S 'S 's 'T 'Re",
        # whitespace runs, tabs, newline mixes
        "a  b   c    d",
        "   leading and trailing   ",
        "\t\ttabs\tand\t \tspaces\t",
        "line1\nline2\r\nline3\rline4\n\n\nline5",
        "\n\n\n",
        " \n \n\t\n  x",
        "trailing newline\n",
        "   \n\n   \t",
        "a\u00a0b\u2003c\u3000d\u200be",  # nbsp, em space, ideographic space, zero-width space
        # digits
        "1234567890123456789012345678901234567890",
        "3.14159265358979 and 2,718,281,828 and 1e-10 and 0x1F",
        "phone: +1 (555) 123-4567, year 2024, ١٢٣٤ ۱۲۳ १२३४",
        # code
        "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
        "for (int i = 0; i < n; ++i) { a[i] += b[i] * 2; }",
        '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
        "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
        "$ echo $HOME && ls -la | grep '\\.txt$' > out.log 2>&1",
        # multilingual
        "你好，世界！今天天气很好。我们去公园散步吧。",
        "日本語のテキスト、カタカナとひらがな。東京タワー",
        "한국어 텍스트입니다. 안녕하세요!",
        "مرحبا بالعالم، كيف حالك اليوم؟",
        "नमस्ते दुनिया, आप कैसे हैं?",
        "Привет, мир! Как дела? Ёжик в тумане.",
        "Ελληνικά: Καλημέρα κόσμε",
        "עברית: שלום עולם",
        "ไทย: สวัสดีชาวโลก",
        "Tiếng Việt: Xin chào thế giới",
        "Mixed 中文 and English 混合 text 123 テスト",
        # emoji
        "Emoji: 😀😃😄 👍🏽 ❤️ 🎉",
        "ZWJ: 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🧑‍🤝‍🧑",
        "Flags: 🇺🇸🇬🇧🇯🇵🇫🇷 and keycaps 1️⃣ #️⃣",
        # NFC: decomposed input must compose (Qwen normalizes NFC; DeepSeek does not)
        "e\u0301cole cafe\u0301 nai\u0308ve",
        "A\u030a Ω \u212b \u2126 \u1e9b\u0323 q\u0307\u0323 q\u0323\u0307",
        "\u1100\u1161\u11a8 \u1100\u1161 \uac00\u11a8",  # Hangul jamo composition
        "o\u0308\u0304 u\u0308\u0301 \u0041\u0328\u0301 \u0301start",
        "\u0958 \u2adc \uf900 \u0344 \u0f73",  # composition exclusions, singletons
        "e\u0301\u0301\u0301\u0301 \u0300\u0300",
        # special-token text
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|><|endoftext|>x<|endoftext|>",
        "<|im_start <|im_end| |im_start|> <|im_sta rt|> <|endoftext",
        "<think>\nreasoning\n</think>\n\nanswer <tool_call>{}</tool_call>",
        "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>hello<｜end▁of▁sentence｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get",
        "<|EOT|> <｜fim▁hole｜> <｜begin▁of▁sentence",
        # punctuation-heavy
        "!!! ??? ... --- *** ___ ''' \"\"\" ```",
        "Mr. O'Brien's co-op (est. 1999) -- \"quoted\" [brackets] {braces}",
        "don't won't can't shouldn't I'VE YOU'LL",
        # odd Unicode
        "\u0000\u0001\u001f\u007f control chars",
        "\ufeffBOM and \ufffd replacement and \U0010ffff max",
        "math: ∀x∈ℝ, ∑ᵢ xᵢ² ≤ ∞; 𝔸𝕓𝕔 𝟙𝟚𝟛",
        "combining: a\u0300\u0301\u0302\u0303 Z\u0351\u0352\u0353",
        "ａｂｃ ＡＢＣ １２３ fullwidth",
    ]
    # random slices of the corpus, long inputs
    for _ in range(20):
        a = rng.randrange(len(corpus) - 3000)
        cases.append(corpus[a : a + rng.randrange(1, 3000)])
    long_text = (corpus * 2)[100_000 : 200_000]
    cases.append(long_text)
    cases.append("a" * 5000)
    cases.append(" " * 3000 + "x")
    cases.append("9" * 1000)
    cases.append("😀" * 500)
    # random Unicode soup: printable code points from many blocks
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x590, 0x6FF), (0x900, 0x97F), (0x1100, 0x11FF), (0x2000, 0x206F),
              (0x3000, 0x30FF), (0x4E00, 0x9FA5), (0xAC00, 0xD7A3), (0x1F300, 0x1F6FF)]
    for _ in range(20):
        s = []
        for _ in range(rng.randrange(1, 200)):
            lo, hi = rng.choice(blocks)
            c = rng.randint(lo, hi)
            if 0xD800 <= c <= 0xDFFF:
                continue
            s.append(chr(c))
            if rng.random() < 0.2:
                s.append(rng.choice([" ", "\n", "  ", "\t", "'s", "123"]))
        cases.append("".join(s))
    return cases


def token_goldens(name):
    d = os.path.join(TOK, name)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    # corpus: ids of every line; check that decode is the identity so only ids are stored
    lines = corpus_lines()
    ids = [tok.encode(line, add_special_tokens=False).ids for line in lines]
    for line, i in zip(lines, ids):
        assert tok.decode(i, skip_special_tokens=False) == line
    dump(os.path.join(OUT, f"{name}_corpus.json"), {"corpus": "corpus/persuasion.txt", "line_ids": ids})

    cases = []
    for text in hand_cases():
        enc = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        enc_nospecial = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        # Fields equal to another are left out to keep the file small: a missing "ids_no_special"
        # means == "ids", a missing "decoded" means == "text", a missing "decoded_skip" == "decoded".
        case = {"text": text, "ids": enc}
        if enc_nospecial != enc:
            case["ids_no_special"] = enc_nospecial
        decoded = tok.decode(enc, skip_special_tokens=False)
        decoded_skip = tok.decode(enc, skip_special_tokens=True)
        if decoded != text:
            case["decoded"] = decoded
        if decoded_skip != decoded:
            case["decoded_skip"] = decoded_skip
        cases.append(case)
    # random id sequences: decode must match (U+FFFD for broken UTF-8, specials skipped)
    rng = random.Random(99)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    decodes = []
    for n in range(300):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 12))]
        if n % 3 == 0:  # favour single-byte tokens, which split UTF-8 sequences
            ids = [rng.randrange(256) for _ in range(rng.randrange(1, 12))]
        decodes.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                        "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    dump(os.path.join(OUT, f"{name}_cases.json"), {"vocab_size": vocab, "cases": cases, "decodes": decodes})


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location — «quoted» \"text\"",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {"type": "function", "function": {"name": "search", "description": "Search the web",
                                                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}


def conversations():
    sys_msg = {"role": "system", "content": "You are a helpful assistant."}
    convs = [
        ("single user", [{"role": "user", "content": "Hello!"}], None),
        ("system + user", [sys_msg, {"role": "user", "content": "What is 2+2?"}], None),
        ("multi-turn", [sys_msg, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello! How can I help?"},
                        {"role": "user", "content": "Tell me a joke.\nPlease."}], None),
        ("multi-turn unicode", [{"role": "user", "content": "你好 😀"},
                                {"role": "assistant", "content": "¡Hola! مرحبا"},
                                {"role": "user", "content": "  spaces  \n\n"}], None),
        ("assistant last", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}], None),
        ("think in content", [{"role": "user", "content": "Q1"},
                              {"role": "assistant", "content": "<think>\nstep 1\nstep 2\n</think>\n\nA1"},
                              {"role": "user", "content": "Q2"}], None),
        ("think in last assistant", [{"role": "user", "content": "Q1"},
                                     {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"}], None),
        ("reasoning_content", [{"role": "user", "content": "Q1"},
                               {"role": "assistant", "content": "A1", "reasoning_content": "I thought about it."},
                               {"role": "user", "content": "Q2"},
                               {"role": "assistant", "content": "A2", "reasoning_content": "\nMore thoughts.\n"}], None),
        ("tools no system", [{"role": "user", "content": "Weather in Paris?"}], [WEATHER_TOOL, SEARCH_TOOL]),
        ("tools with system", [sys_msg, {"role": "user", "content": "Weather in Paris?"}], [WEATHER_TOOL]),
        ("tool call dict args", [sys_msg, {"role": "user", "content": "Weather in Paris and Rome?"},
                                 {"role": "assistant", "content": "", "tool_calls": [
                                     {"type": "function", "function": {"name": "get_weather",
                                                                       "arguments": {"location": "Paris", "unit": "celsius", "days": 2}}},
                                     {"type": "function", "function": {"name": "get_weather",
                                                                       "arguments": {"location": "Rome", "flag": True, "x": None, "f": 1.5}}}]},
                                 {"role": "tool", "content": "{\"temp\": 20}"},
                                 {"role": "tool", "content": "{\"temp\": 25}"},
                                 {"role": "assistant", "content": "Paris 20°C, Rome 25°C."},
                                 {"role": "user", "content": "Thanks"}], [WEATHER_TOOL]),
        ("tool call with content", [{"role": "user", "content": "Search cats"},
                                    {"role": "assistant", "content": "Let me search.", "tool_calls": [
                                        {"type": "function", "function": {"name": "search", "arguments": {"q": "cats"}}}]},
                                    {"role": "tool", "content": "<tool_response>cats are great</tool_response>"}], [SEARCH_TOOL]),
        ("tool call string args", [{"role": "user", "content": "Weather?"},
                                   {"role": "assistant", "content": "", "tool_calls": [
                                       {"type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Oslo\"}"}}]},
                                   {"role": "tool", "content": "sunny"}], [WEATHER_TOOL]),
        ("tool call reasoning", [{"role": "user", "content": "Weather?"},
                                 {"role": "assistant", "content": "", "reasoning_content": "Need a tool.", "tool_calls": [
                                     {"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Oslo"}}}]},
                                 {"role": "tool", "content": "sunny"},
                                 {"role": "assistant", "content": "It is sunny.", "reasoning_content": "Tool said sunny."}], [WEATHER_TOOL]),
        ("two systems", [sys_msg, {"role": "user", "content": "a"}, {"role": "system", "content": "Second system."},
                         {"role": "user", "content": "b"}], None),
    ]
    return convs


# DeepSeek-V3's template expects tool-call arguments as strings and content None on tool-call turns.
def deepseek_conversations():
    convs = [c for c in conversations() if "tool" not in c[0] and "reasoning" not in c[0]]
    convs.append(("ds tool calls", [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Rome\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 20}"},
        {"role": "tool", "content": "{\"temp\": 25}"},
        {"role": "assistant", "content": "Paris 20, Rome 25."},
        {"role": "user", "content": "Thanks"}], None))
    convs.append(("ds tool output last", [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "content": "rain"}], None))
    return convs


def chat_goldens():
    out = []
    templates = {}
    for name in ["qwen3", "deepseek_v3"]:
        templates[name] = AutoTokenizer.from_pretrained(os.path.join(TOK, name))
    with open(os.path.join(TOK, "qwen2_5_chat_template.jinja"), encoding="utf-8") as f:
        qwen25_template = f.read()
    raw = Tokenizer.from_file(os.path.join(TOK, "qwen3", "tokenizer.json"))
    raw_ds = Tokenizer.from_file(os.path.join(TOK, "deepseek_v3", "tokenizer.json"))
    for template_name in ["qwen3", "qwen2_5", "deepseek_v3"]:
        tok = templates["qwen3" if template_name == "qwen2_5" else template_name]
        rawtok = raw_ds if template_name == "deepseek_v3" else raw
        convs = deepseek_conversations() if template_name == "deepseek_v3" else conversations()
        for label, messages, tools in convs:
            for agp in [True, False]:
                kw_options = [{}]
                if template_name == "qwen3":
                    kw_options = [{}, {"enable_thinking": False}, {"enable_thinking": True}]
                for kwargs in kw_options:
                    extra = {"chat_template": qwen25_template} if template_name == "qwen2_5" else {}
                    case = {"template": template_name, "label": label, "messages": messages, "tools": tools,
                            "add_generation_prompt": agp, "kwargs": kwargs}
                    try:
                        rendered = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=agp,
                                                           tokenize=False, **extra, **kwargs)
                        case["rendered"] = rendered
                        case["ids"] = rawtok.encode(rendered, add_special_tokens=False).ids
                    except Exception as e:  # the template rejects the input; we must reject it too
                        case["error"] = str(e)
                    out.append(case)
    dump(os.path.join(OUT, "chat_templates.json"), out)


JINJA_VARS = {
    "s": "  Hello, World!  ", "n": 7, "f": 2.5, "neg": -3, "t": True, "no": None, "empty": "",
    "lst": [3, 1, 2], "strs": ["b", "A", "c"], "d": {"z": 1, "a": [1, 2, {"k": None}], "m": "é\n\"q\""},
    "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "yo", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
             {"role": "tool", "content": "out"}],
    "unicode": "naïve café 日本語 😀",
    "chat": [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "bye\n"}],
    "bad_chat": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "bos_token": "<s>", "eos_token": "</s>",
}

JINJA_SNIPPETS = [
    # output and arithmetic
    "{{ n + 1 }} {{ n - 10 }} {{ n * 2 }} {{ n / 2 }} {{ n // 2 }} {{ n % 3 }} {{ -n % 3 }} {{ 2 ** 8 }} {{ f * 2 }}",
    "{{ n / 7 }} {{ 1 / 3 }} {{ 10 / 4 }} {{ 1e20 }} {{ 1.0e-7 }} {{ 123456789.123 }} {{ -0.5 }} {{ 3 * 1.1 }}",
    "{{ t }} {{ no }} {{ lst }} {{ d }} {{ strs }} {{ (1, 'a') }} {{ [] }} {{ {} }}",
    "{{ 'a' ~ n ~ f ~ t ~ no }} {{ 'x' * 3 }} {{ lst + [4] }} {{ 'ab' + 'cd' }}",
    "{{ n > 3 and n < 10 }} {{ n == 7.0 }} {{ 'a' < 'b' }} {{ not n }} {{ n != 7 }} {{ 1 == true }} {{ 0 or 'x' }} {{ '' and 'y' }}",
    "{{ 'ell' in s }} {{ 3 in lst }} {{ 'z' in d }} {{ 'q' not in d }} {{ 5 in lst }}",
    "{{ 'yes' if t else 'no' }}|{{ 'yes' if no else 'no' }}|{{ 'x' if no }}|",
    # strings
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' !H') }}|{{ s | trim }}|",
    "{{ s.upper() }} {{ s.lower() }} {{ s.title() }} {{ 'hello world'.capitalize() }} {{ s | upper }}",
    "{{ s.split(',') }} {{ s.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a b  c'.split(' ') }} {{ s.splitlines() }}",
    "{{ s.replace('l', 'L') }} {{ s.replace('l', 'L', 1) }} {{ s | replace('o', '0') }} {{ s.find('o') }} {{ s.count('l') }}",
    "{{ s.startswith('  He') }} {{ s.endswith('!  ') }} {{ s.startswith(('x', '  ')) }} {{ unicode.startswith('naï') }}",
    "{{ unicode[1:4] }} {{ unicode[::-1] }} {{ unicode | length }} {{ unicode[-1] }} {{ unicode.upper() }}",
    "{{ s[2:7] }} {{ s[:3] }}|{{ s[-3:] }}|{{ s[::2] }} {{ lst[::-1] }} {{ lst[1:] }} {{ lst[-1] }} {{ lst[10] }}|",
    "{{ '-'.join(strs) }} {{ strs | join(', ') }} {{ lst | join }} {{ 'abc' | reverse }}",
    "{{ '%s' }} {{ 'it\\'s' }} {{ \"dq\" }} {{ 'tab\\there' }} {{ 'a' 'b' }}",
    # filters
    "{{ lst | length }} {{ d | length }} {{ s | length }} {{ lst | first }} {{ lst | last }} {{ lst | sort }} {{ strs | sort }}",
    "{{ lst | sort(reverse=true) }} {{ lst | sum }} {{ lst | min }} {{ lst | max }} {{ [1, 1, 2] | unique | list }}",
    "{{ d | items | list }} {{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list | length }}",
    "{{ undefined_var | default('dflt') }} {{ no | default('dflt') }} {{ '' | default('dflt', true) }} {{ n | string }}",
    "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }} {{ msgs | rejectattr('role', 'eq', 'tool') | map(attribute='role') | join(',') }}",
    "{{ msgs | map(attribute='content') | list }} {{ msgs | selectattr('tool_calls', 'defined') | list | length }}",
    "{{ lst | map('string') | join('-') }} {{ [1, 0, 2] | select | list }} {{ [1, 2, 3, 4] | select('odd') | list }}",
    "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ msgs[2] | tojson }}|{{ unicode | tojson }}|{{ f | tojson }}",
    "{{ d | tojson(sort_keys=true) }}|{{ lst | tojson(separators=(',', ':')) }}|{{ no | tojson }}|{{ t | tojson }}",
    "{{ d | tojson(indent=4, sort_keys=true) }}|{{ [[], {}] | tojson(indent=2) }}",
    "{{ -3 | abs }} {{ '42' | int }} {{ 'x' | int }} {{ 3.7 | int }} {{ '2.5' | float }} {{ 2.567 | round(1) }}",
    "{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}",
    "{{ d | dictsort }} {{ 'Hello World' | lower }} {{ 'hello world' | title }} {{ 'x' | capitalize }}",
    # tests
    "{{ n is defined }} {{ nope is defined }} {{ nope is undefined }} {{ no is none }} {{ n is none }} {{ s is string }}",
    "{{ n is number }} {{ f is float }} {{ n is integer }} {{ d is mapping }} {{ lst is mapping }} {{ lst is iterable }}",
    "{{ t is true }} {{ t is false }} {{ t is boolean }} {{ n is odd }} {{ n is even }} {{ n is divisibleby 7 }} {{ n is divisibleby(2) }}",
    "{{ lst is sequence }} {{ s is sequence }} {{ n is not none }} {{ 3 is in lst }} {{ n is eq 7 }} {{ n is gt 3 }}",
    # statements
    "{% for x in lst %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }} {% endfor %}",
    "{% for x in lst %}{{ loop.previtem }}-{{ x }}-{{ loop.nextitem }} {{ loop.cycle('a', 'b') }} {% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k in d %}{{ k }}{% endfor %}",
    "{% for c in 'abc' %}{{ c }}.{% endfor %} {% for x in [] %}x{% else %}none{% endfor %}",
    "{% for m in msgs if m.role != 'system' %}{{ loop.index }}{{ m.role }} {% endfor %}",
    "{% for x in lst %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% if x == 1 %}{% break %}{% endif %}{% endfor %}",
    "{% for i in range(3) %}{% for j in range(2) %}{{ i }}{{ j }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}",
    "{% set a = 1 %}{% set b, c = 2, 3 %}{{ a }}{{ b }}{{ c }}{% set lst2 = lst + [9] %}{{ lst2 }}",
    "{% set ns = namespace(found=false, n=0) %}{% for m in msgs %}{% if m.role == 'tool' %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }} {{ ns.n }}",
    "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}{% for i in [1] %}{% set x = 3 %}{{ x }}{% endfor %}{{ x }}",
    "{% macro f(a, b=2) %}[{{ a }}-{{ b }}]{% endmacro %}{{ f(1) }}{{ f(1, 3) }}{{ f(a=5, b=6) }}{{ f('x') | length }}",
    "{% set blk %}inner {{ n }}{% endset %}<{{ blk }}> {{ blk | length }}",
    "{% if n > 10 %}big{% elif n > 5 %}mid{% else %}small{% endif %}",
    # whitespace control
    "a\n  {% if true %}\n    b\n  {% endif %}\n  c\n",
    "  {% for x in lst %}\n  - {{ x }}\n  {% endfor %}\nend",
    "x {%- if true %} y {% endif -%} z",
    "{% if true %}  \n keep\n{% endif %}",
    "line\n    {#- comment -#}\n  after",
    "{{- '  a  ' -}}   {{ 'b' }}  {%- if true %}\n c{% endif %}",
    "pre {%+ if true %}x{% endif %} post\n  {%+ if true %}y{% endif %}",
    "{% if true -%}\n\n   x   \n\n{%- endif %}",
    "\t{% if true %}\ttab\n\t{% endif %}\tz",
    "a {# inline #} b\n{# own line #}\nc",
    "x\u3000\u00a0 {%- if true -%} \u2003\ny{% endif %}\n\u3000 {% if true %}z{% endif %}",
    "a\x1f {{- 'b' -}} \x1c c",
    # messages-like access
    "{{ msgs[0]['role'] }} {{ msgs[0].content }} {{ msgs[2].tool_calls[0].function.arguments | tojson }} {{ msgs[1].missing }}|",
    "{{ msgs[-1].role }} {{ (msgs | length) - 1 }} {{ msgs[1:3] | map(attribute='role') | join }}",
    "{{ d.get('z') }} {{ d.get('nope') }} {{ d.get('nope', 'fb') }} {{ d['a'][2]['k'] }} {{ d.a.1 }}",
    # template-shaped snippets (Mixtral-style alternation check, Llama-3-style trim precedence)
    "{{ bos_token }}{% for message in chat %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    "{% for message in bad_chat %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate') }}{% endif %}{{ message.content }}{% endfor %}",
    "{% for message in chat %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}",
    "{%- for m in chat -%}\n  {%- if m.role == 'user' -%}\n    U: {{ m.content | trim }}\n  {% else -%}\n    A: {{ m.content }}\n  {% endif -%}\n{%- endfor %}",
    "{% if chat[0]['role'] == 'system' %}{% set sys = chat[0]['content'] %}{% set rest = chat[1:] %}"
    "{% else %}{% set sys = 'default' %}{% set rest = chat %}{% endif %}{{ sys }}|{{ rest | length }}",
    "{{ chat | tojson }}{{ chat | map(attribute='role') | unique | list }}{{ (chat | last).content }}",
    "{% for m in chat %}{{ m.content.split('\n')[0] }}{{ '|' if not loop.last }}{% endfor %}",
    "{{ chat[0].content is string }} {{ chat[0].content | length }} {{ chat | selectattr('role', '==', 'user') | list | length }}",
    # errors (transformers raises; so must we)
    "{{ raise_exception('custom failure') }}",
    "{{ nope.attr }}",
    "{{ 'a' + nope }}",
    "{{ n + 'a' }}",
    "{{ no.strip() }}",
    "{{ lst.append(4) }}",
    "{% set d.x = 1 %}",
]


def jinja_goldens():
    from transformers.utils.chat_template_utils import _compile_jinja_template
    out = []
    for src in JINJA_SNIPPETS:
        case = {"template": src}
        try:
            case["rendered"] = _compile_jinja_template(src).render(**JINJA_VARS)
        except Exception as e:  # noqa: BLE001 - any Jinja failure must be an error for us too
            case["error"] = f"{type(e).__name__}: {e}"
        out.append(case)
    dump(os.path.join(OUT, "jinja_snippets.json"), {"vars": JINJA_VARS, "cases": out})


def flags_goldens():
    with open(os.path.join(TOK, "qwen3", "tokenizer.json"), encoding="utf-8") as f:
        full = json.load(f)
    merges = full["model"]["merges"][:3000]
    vocab = {}
    inv = {v: k for k, v in full["model"]["vocab"].items()}
    for i in range(256):  # Qwen's first 256 ids are the byte-level alphabet
        vocab[inv[i]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    n = len(vocab)
    added = [
        {"content": "<|im_start|>", "special": True, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False},
        {"content": "<|im_end|>", "special": True, "lstrip": False, "rstrip": True, "normalized": False, "single_word": False},
        {"content": "<mask>", "special": True, "lstrip": True, "rstrip": False, "normalized": False, "single_word": False},
        {"content": "<both>", "special": False, "lstrip": True, "rstrip": True, "normalized": False, "single_word": False},
        {"content": "qwx", "special": False, "lstrip": False, "rstrip": False, "normalized": False, "single_word": True},
        {"content": "café", "special": False, "lstrip": False, "rstrip": False, "normalized": True, "single_word": False},
        {"content": "<|im", "special": False, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False},
    ]
    for i, a in enumerate(added):
        # HF gives an added token whose text is already in the vocab that vocab id, whatever
        # the file says; keep clear of that quirk so the ids in the file are the real ones.
        assert a["content"] not in vocab, a["content"]
        a["id"] = n + i
    tj = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [{"id": a["id"], **{k: v for k, v in a.items() if k != "id"}} for a in added],
          "normalizer": full["normalizer"], "pre_tokenizer": full["pre_tokenizer"],
          "post_processor": full["post_processor"], "decoder": full["decoder"],
          "model": {**{k: v for k, v in full["model"].items() if k not in ("vocab", "merges")},
                    "vocab": vocab, "merges": merges}}
    d = os.path.join(TOK, "flags")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    texts = [
        "a <|im_end|>   b", "x<|im_end|>\n\ny", "<|im_start|>user<|im_end|> ", "hello   <mask> there",
        "\n\t <mask>", "<mask><mask>  <mask>", "a  <both>  b", "<both>", "  <both>\n", "qwx qwxs sqwx qwx.",
        "a qwx, (qwx) _qwx qwx_ qwxy 1qwx qwx1 é qwx éqwx qwxé 日qwx", "qwx", " qwx ", "dqwx<mask>qwx", "café cafe\u0301 CAFÉ xcafé", "<|im_start|><|im_st <|im_end",
        "<|im <|im_end|>", "text without any added token",
    ]
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        ns = tok.encode(t, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({"text": t, "ids": ids, "ids_no_special": ns,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    # Pre-tokenizer variants the two real files do not use, on the same small model: the C++
    # test swaps each "pre_tokenizer" into flags/tokenizer.json and compares.
    variants = []
    texts2 = ["Hello, world! It's 2024... a-b--c", "  x  y\n\nz\t", "don't   stop 12345 café",
              "a,b,,c", ",lead and trail,", "日本語 text"]
    for spec in [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": ","}, "behavior": "Removed", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "[,\\-]+"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithNext", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
    ]:
        variant = dict(tj, pre_tokenizer=spec)
        vt = Tokenizer.from_str(json.dumps(variant))
        variants.append({"pre_tokenizer": spec,
                         "cases": [{"text": t, "ids": vt.encode(t, add_special_tokens=False).ids} for t in texts2]})
    dump(os.path.join(OUT, "flags_cases.json"), {"cases": cases, "pre_tokenizer_variants": variants})


def main():
    os.makedirs(OUT, exist_ok=True)
    flags_goldens()
    jinja_goldens()
    for name in ["qwen3", "deepseek_v3"]:
        token_goldens(name)
    chat_goldens()


if __name__ == "__main__":
    main()
