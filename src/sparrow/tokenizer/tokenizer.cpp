// Loading and the encode/decode pipeline. The pieces (normalizer, pre-tokenizer, BPE model,
// added vocabulary) each live in their own file; this one wires them in HF's order.
#include "sparrow/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/bpe.h"
#include "sparrow/tokenizer/byte_level.h"
#include "sparrow/tokenizer/chat_template.h"
#include "sparrow/tokenizer/normalizer.h"
#include "sparrow/tokenizer/pre_tokenizer.h"
#include "sparrow/tokenizer/utf8.h"

namespace sparrow {

namespace {

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

nlohmann::json load_json(const std::string& path, bool required) {
  std::string text;
  if (!read_file(path, text)) {
    SPARROW_REQUIRE(!required, "cannot read tokenizer file {}", path);
    return nullptr;
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("malformed JSON in {}: {}", path, e.what());
  }
}

// tokenizer_config.json writes special tokens as a string or as {"content": ..., ...}.
std::string token_content(const nlohmann::json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return "";
  const auto& v = cfg.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
  return "";
}

void add_ids(const nlohmann::json& v, std::vector<int32_t>& out) {
  auto add = [&](int32_t id) {
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  };
  if (v.is_number_integer()) add(v.get<int32_t>());
  if (v.is_array())
    for (const auto& x : v)
      if (x.is_number_integer()) add(x.get<int32_t>());
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_dir(const std::string& dir) {
  auto tj = load_json(dir + "/tokenizer.json", true);
  auto cfg = load_json(dir + "/tokenizer_config.json", false);
  auto gen = load_json(dir + "/generation_config.json", false);
  auto model_cfg = load_json(dir + "/config.json", false);
  std::string jinja;
  if (read_file(dir + "/chat_template.jinja", jinja)) {
    if (!cfg.is_object()) cfg = nlohmann::json::object();
    cfg["chat_template"] = jinja;
  }
  try {
    return from_json(tj, cfg, gen, model_cfg);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("unexpected content in tokenizer files of {}: {}", dir, e.what());
  }
}

std::unique_ptr<Tokenizer> Tokenizer::from_json(const nlohmann::json& tj, const nlohmann::json& cfg,
                                                const nlohmann::json& gen, const nlohmann::json& model_cfg) {
  SPARROW_REQUIRE(tj.is_object() && tj.contains("model"), "tokenizer.json: no \"model\" object");
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->model_ = std::make_unique<BpeModel>(tj.at("model"));
  t->normalizer_ = std::make_unique<Normalizer>(tj.value("normalizer", nlohmann::json()));
  t->pre_tokenizer_ = std::make_unique<PreTokenizer>(tj.value("pre_tokenizer", nlohmann::json()));
  if (tj.contains("decoder") && !tj.at("decoder").is_null()) {
    std::string d = tj.at("decoder").value("type", "");
    SPARROW_REQUIRE(d == "ByteLevel", "tokenizer.json: decoder type '{}' is not supported (only ByteLevel)", d);
  }

  int32_t size = t->model_->size();
  if (tj.contains("added_tokens")) {
    for (const auto& a : tj.at("added_tokens")) {
      AddedToken tok;
      tok.id = a.at("id").get<int32_t>();
      SPARROW_REQUIRE(tok.id >= 0 && tok.id < (1 << 28), "tokenizer.json: added token id {} out of range", tok.id);
      tok.content = a.at("content").get<std::string>();
      tok.special = a.value("special", false);
      tok.lstrip = a.value("lstrip", false);
      tok.rstrip = a.value("rstrip", false);
      tok.normalized = a.value("normalized", !tok.special);
      tok.single_word = a.value("single_word", false);
      std::string norm;
      t->normalizer_->apply(tok.content, norm);
      size = std::max(size, tok.id + 1);
      t->added_.add(std::move(tok), std::move(norm));
    }
  }
  t->vocab_size_ = size;
  t->token_bytes_.resize(size);
  t->special_.assign(size, 0);
  for (int32_t id = 0; id < t->model_->size(); ++id) {
    const std::string& s = t->model_->id_to_token(id);
    if (!s.empty()) t->token_bytes_[id] = byte_level::decode_token(s);
  }
  for (const auto& a : t->added_.tokens()) {
    t->token_bytes_[a.id] = byte_level::decode_token(a.content);
    t->special_[a.id] = a.special;
  }

  // tokenizer_config.json: chat template and special tokens.
  if (cfg.is_object()) {
    if (cfg.contains("chat_template")) {
      const auto& ct = cfg.at("chat_template");
      if (ct.is_string()) {
        t->chat_template_ = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
        for (const auto& e : ct)
          if (e.value("name", "") == "default") t->chat_template_ = e.value("template", "");
      }
    }
    t->add_bos_token_ = cfg.value("add_bos_token", false) == true;
  }
  // Parse the template now so every request reuses it; a template we cannot parse does not
  // stop plain tokenization, it makes apply_chat_template fail with the reason.
  if (!t->chat_template_.empty()) {
    try {
      t->parsed_template_ = std::make_shared<ChatTemplate>(t->chat_template_);
    } catch (const InputError& e) {
      t->template_error_ = e.what();
    }
  }
  t->bos_token_ = token_content(cfg, "bos_token");
  t->eos_token_ = token_content(cfg, "eos_token");
  t->pad_token_ = token_content(cfg, "pad_token");
  t->unk_token_ = token_content(cfg, "unk_token");
  auto id_of = [&](const std::string& s) -> std::optional<int32_t> {
    if (s.empty()) return std::nullopt;
    return t->token_to_id(s);
  };
  t->bos_id_ = id_of(t->bos_token_);
  t->eos_id_ = id_of(t->eos_token_);
  t->pad_id_ = id_of(t->pad_token_);

  if (gen.is_object() && gen.contains("eos_token_id")) {
    add_ids(gen.at("eos_token_id"), t->stop_ids_);
  } else if (model_cfg.is_object() && model_cfg.contains("eos_token_id")) {
    add_ids(model_cfg.at("eos_token_id"), t->stop_ids_);
  }
  if (t->eos_id_) add_ids(*t->eos_id_, t->stop_ids_);
  if (!t->bos_id_) {
    for (const auto& c : {gen, model_cfg})
      if (c.is_object() && c.contains("bos_token_id") && c.at("bos_token_id").is_number_integer()) {
        t->bos_id_ = c.at("bos_token_id").get<int32_t>();
        break;
      }
  }
  return t;
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> local;
  pre_tokenizer_->split(text, local);
  for (auto p : local) model_->encode_word(p, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::string sanitized;
  if (!utf8::is_valid(text)) {
    sanitized = utf8::to_valid_lossy(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Segment> raw;
  added_.split(text, /*normalized_pass=*/false, parse_special, raw);
  std::string normalized;
  std::vector<Segment> inner;
  for (const Segment& seg : raw) {
    if (seg.token >= 0) {
      ids.push_back(seg.token);
      continue;
    }
    std::string_view piece = seg.text;
    if (!normalizer_->is_identity()) {
      normalized.clear();
      normalizer_->apply(piece, normalized);
      piece = normalized;
    }
    if (!added_.has_normalized()) {
      encode_text(piece, ids);
      continue;
    }
    inner.clear();
    added_.split(piece, /*normalized_pass=*/true, parse_special, inner);
    for (const Segment& s : inner) {
      if (s.token >= 0) {
        ids.push_back(s.token);
      } else {
        encode_text(s.text, ids);
      }
    }
  }
  return ids;
}

std::string_view Tokenizer::token_bytes(int32_t id, bool skip_special) const {
  if (id < 0 || id >= vocab_size_) return {};
  if (skip_special && special_[id]) return {};
  return token_bytes_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) bytes.append(token_bytes(id, skip_special));
  return utf8::to_valid_lossy(bytes);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& a : added_.tokens())
    if (a.content == token) return a.id;
  int32_t id = model_->token_to_id(token);
  if (id >= 0) return id;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  for (const auto& a : added_.tokens())
    if (a.id == id) return a.content;
  return model_->id_to_token(id);
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size_ && special_[id]; }

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return added_.tokens(); }

}  // namespace sparrow
