#include "sparrow/server/request_parsing.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

#include "sparrow/core/log.h"
#include "sparrow/server/http_util.h"

namespace sparrow::server {
namespace {

const json* field(const json& o, const std::string& key) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t as_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      throw FieldError(name, fmt::format("{} is out of range", name));
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>()) &&
             std::fabs(v.get<double>()) < 9e18) {
    x = int64_t(v.get<double>());  // 5.0 is accepted as 5
  } else {
    throw FieldError(name, fmt::format("{} must be an integer, got {}", name, dump(v)));
  }
  if (x < lo || x > hi) throw FieldError(name, fmt::format("{} must be in [{}, {}], got {}", name, lo, hi, x));
  return x;
}

}  // namespace

std::optional<double> get_number(const json& o, const std::string& key) {
  const json* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw FieldError(key, fmt::format("{} must be a number, got {}", key, dump(*v)));
  return v->get<double>();
}

std::optional<int64_t> get_int(const json& o, const std::string& key, int64_t lo, int64_t hi) {
  const json* v = field(o, key);
  if (!v) return std::nullopt;
  return as_int(*v, key, lo, hi);
}

std::optional<bool> get_bool(const json& o, const std::string& key) {
  const json* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw FieldError(key, fmt::format("{} must be true or false, got {}", key, dump(*v)));
  return v->get<bool>();
}

std::optional<std::string> get_string(const json& o, const std::string& key) {
  const json* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw FieldError(key, fmt::format("{} must be a string, got {}", key, dump(*v)));
  return v->get<std::string>();
}

std::vector<int32_t> parse_ids(const json& v, const std::string& name, int64_t vocab) {
  if (!v.is_array()) throw FieldError(name, fmt::format("{} must be an array of token ids", name));
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const json& x = v[i];
    if (!x.is_number_integer())
      throw FieldError(name, fmt::format("{}[{}] must be an integer token id, got {}", name, i, dump(x)));
    const int64_t id = x.is_number_unsigned() && x.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : x.get<int64_t>();
    if (id < 0 || id >= vocab)
      throw FieldError(name, fmt::format("{}[{}] = {} is outside the vocabulary [0, {})", name, i, id, vocab));
    ids.push_back(int32_t(id));
  }
  return ids;
}

std::vector<std::string> parse_stop(const json& v, const std::string& name) {
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const json& s : v) {
      if (!s.is_string()) throw FieldError(name, fmt::format("{} must be a string or an array of strings", name));
      out.push_back(s.get<std::string>());
    }
  } else {
    throw FieldError(name, fmt::format("{} must be a string or an array of strings", name));
  }
  for (const std::string& s : out)
    if (s.empty()) throw FieldError(name, fmt::format("{} must not contain empty strings", name));
  return out;
}

void parse_sampling_params(const json& sp, SamplingParams& out, int64_t vocab, bool& max_new_tokens_given,
                           const std::string& prefix) {
  if (sp.is_null()) return;
  if (!sp.is_object()) throw FieldError(prefix.substr(0, prefix.size() - 1), "sampling_params must be an object");
  for (const char* unsupported : {"regex", "json_schema", "ebnf", "structural_tag"})
    if (field(sp, unsupported))
      throw FieldError(prefix + unsupported, fmt::format("{}{} (constrained decoding) is not supported", prefix, unsupported));
  // Error messages name the field with its prefix.
  auto num = [&](const char* k, float& dst) {
    try {
      if (auto v = get_number(sp, k)) dst = float(*v);
    } catch (const FieldError& e) {
      throw FieldError(prefix + k, prefix + e.what());
    }
  };
  auto integer = [&](const char* k, int64_t lo, int64_t hi) -> std::optional<int64_t> {
    try {
      return get_int(sp, k, lo, hi);
    } catch (const FieldError& e) {
      throw FieldError(prefix + k, prefix + e.what());
    }
  };
  auto boolean = [&](const char* k, bool& dst) {
    try {
      if (auto v = get_bool(sp, k)) dst = *v;
    } catch (const FieldError& e) {
      throw FieldError(prefix + k, prefix + e.what());
    }
  };
  num("temperature", out.temperature);
  num("top_p", out.top_p);
  num("min_p", out.min_p);
  num("frequency_penalty", out.frequency_penalty);
  num("presence_penalty", out.presence_penalty);
  num("repetition_penalty", out.repetition_penalty);
  if (auto v = integer("top_k", INT32_MIN, INT32_MAX)) out.top_k = *v == 0 ? -1 : int32_t(*v);
  if (auto v = integer("max_new_tokens", 0, INT32_MAX)) out.max_new_tokens = int32_t(*v), max_new_tokens_given = true;
  if (auto v = integer("min_new_tokens", 0, INT32_MAX)) out.min_new_tokens = int32_t(*v);
  if (auto v = integer("n", 1, 64)) out.n = int32_t(*v);
  if (auto v = integer("sampling_seed", 0, INT64_MAX)) out.sampling_seed = uint64_t(*v);
  boolean("ignore_eos", out.ignore_eos);
  boolean("skip_special_tokens", out.skip_special_tokens);
  if (const json* v = field(sp, "stop")) out.stop = parse_stop(*v, prefix + "stop");
  if (const json* v = field(sp, "stop_token_ids")) out.stop_token_ids = parse_ids(*v, prefix + "stop_token_ids", vocab);
  // Ranges the engine checks too, reported here with the field's full name.
  try {
    out.validate(vocab);
  } catch (const InputError& e) {
    throw FieldError("", prefix.empty() ? std::string(e.what()) : prefix + e.what());
  }
}

int32_t default_max_new_tokens(const ServerContext& ctx, size_t prompt_len, int32_t preferred) {
  const int64_t room = ctx.engine->context_length() - int64_t(prompt_len);
  return int32_t(std::max<int64_t>(0, std::min<int64_t>(preferred, room)));
}

const Tokenizer& ServerContext::require_tokenizer(const char* what) const {
  if (!tokenizer)
    throw HttpError(400, fmt::format("{} needs a tokenizer, but the server runs with --skip-tokenizer-init; send token ids", what));
  return *tokenizer;
}

std::vector<int32_t> encode_text(const ServerContext& ctx, const std::string& text, const std::string& name) {
  const Tokenizer& tok = ctx.require_tokenizer("text input");
  if (text.empty()) throw FieldError(name, fmt::format("{} is empty", name));
  return tok.encode(text);
}

void note_unknown_fields(const json& body, std::initializer_list<const char*> known, const char* route) {
  if (log_level() > LogLevel::kDebug) return;
  for (auto it = body.begin(); it != body.end(); ++it) {
    bool found = false;
    for (const char* k : known) found = found || it.key() == k;
    if (!found) log(LogLevel::kDebug, "{}: ignoring unknown field '{}'", route, it.key());
  }
}

// ---------------------------------------------------------------------------- /generate

NativeGenerate parse_generate(const json& body, const ServerContext& ctx) {
  note_unknown_fields(body,
                      {"text", "input_ids", "sampling_params", "rid", "stream", "return_logprob", "logprob_start_len",
                       "top_logprobs_num", "token_ids_logprob", "return_text_in_logprobs", "model", "lora_path",
                       "custom_logit_processor", "return_hidden_states", "bootstrap_host", "data_parallel_rank"},
                      "/generate");
  const int64_t vocab = ctx.vocab_size();
  for (const char* k : {"input_embeds", "image_data", "audio_data", "video_data", "lora_path"})
    if (field(body, k)) throw FieldError(k, fmt::format("{} is not supported", k));
  const json* text = field(body, "text");
  const json* ids = field(body, "input_ids");
  if ((text != nullptr) == (ids != nullptr)) throw HttpError(400, "give exactly one of text or input_ids");

  // Inputs as token ids; batch when a list of texts / a list of id lists.
  std::vector<std::vector<int32_t>> inputs;
  bool batch = false;
  if (text) {
    if (text->is_string()) {
      inputs.push_back(encode_text(ctx, text->get<std::string>(), "text"));
    } else if (text->is_array()) {
      batch = true;
      if (text->empty()) throw FieldError("text", "text is an empty list");
      for (size_t i = 0; i < text->size(); ++i) {
        if (!(*text)[i].is_string()) throw FieldError("text", fmt::format("text[{}] must be a string", i));
        inputs.push_back(encode_text(ctx, (*text)[i].get<std::string>(), fmt::format("text[{}]", i)));
      }
    } else {
      throw FieldError("text", "text must be a string or a list of strings");
    }
  } else {
    if (!ids->is_array()) throw FieldError("input_ids", "input_ids must be a list of token ids or a list of such lists");
    if (ids->empty()) throw FieldError("input_ids", "input_ids is empty");
    if ((*ids)[0].is_array()) {
      batch = true;
      for (size_t i = 0; i < ids->size(); ++i) {
        inputs.push_back(parse_ids((*ids)[i], fmt::format("input_ids[{}]", i), vocab));
        if (inputs.back().empty()) throw FieldError("input_ids", fmt::format("input_ids[{}] is empty", i));
      }
    } else {
      inputs.push_back(parse_ids(*ids, "input_ids", vocab));
    }
  }
  const size_t nin = inputs.size();

  // A field that may be one value for all inputs or a list with one per input.
  auto per_input = [&](const char* key, size_t i, bool value_is_list) -> json {
    const json* v = field(body, key);
    if (!v) return nullptr;
    const bool listed = batch && v->is_array() && (!value_is_list || (!v->empty() && ((*v)[0].is_array() || (*v)[0].is_null())));
    if (!listed) return *v;
    if (v->size() != nin) throw FieldError(key, fmt::format("{} has {} entries for {} inputs", key, v->size(), nin));
    return (*v)[i];
  };

  NativeGenerate g;
  g.list_response = batch;
  g.stream = get_bool(body, "stream").value_or(false);
  g.return_text_in_logprobs = get_bool(body, "return_text_in_logprobs").value_or(false);
  if (g.return_text_in_logprobs) ctx.require_tokenizer("return_text_in_logprobs");
  const json* rid = field(body, "rid");
  if (rid && !(rid->is_string() || (batch && rid->is_array())))
    throw FieldError("rid", "rid must be a string (or, for a batch, a list of strings)");
  if (rid && rid->is_array() && rid->size() != nin) throw FieldError("rid", "rid must have one entry per input");

  for (size_t i = 0; i < nin; ++i) {
    Request base;
    base.input_ids = std::move(inputs[i]);
    bool max_given = false;
    const json sp = per_input("sampling_params", i, false);
    if (!sp.is_null() && !sp.is_object())
      throw FieldError("sampling_params", "sampling_params must be an object or a list of objects (one per input)");
    parse_sampling_params(sp, base.sampling, vocab, max_given);
    if (!max_given) base.sampling.max_new_tokens = default_max_new_tokens(ctx, base.input_ids.size(), 128);
    json one = json::object();
    for (const char* k : {"return_logprob", "logprob_start_len", "top_logprobs_num", "token_ids_logprob"})
      one[k] = per_input(k, i, std::string(k) == "token_ids_logprob");
    base.return_logprob = get_bool(one, "return_logprob").value_or(false);
    base.logprob_start_len = int32_t(get_int(one, "logprob_start_len", -1, INT32_MAX).value_or(-1));
    base.top_logprobs_num = int32_t(get_int(one, "top_logprobs_num", 0, 1000).value_or(0));
    if (const json* t = field(one, "token_ids_logprob")) base.token_ids_logprob = parse_ids(*t, "token_ids_logprob", vocab);
    if (base.logprob_start_len >= int32_t(base.input_ids.size()))
      throw FieldError("logprob_start_len", fmt::format("logprob_start_len {} must be less than the prompt length {}",
                                                        base.logprob_start_len, base.input_ids.size()));
    std::string r;
    if (rid) r = rid->is_array() ? ((*rid)[i].is_string() ? (*rid)[i].get<std::string>() : "") : rid->get<std::string>();
    const int32_t n = base.sampling.n;
    if (n > 1) g.list_response = true;
    for (int32_t k = 0; k < n; ++k) {
      Request q = base;
      q.sampling.n = 1;
      if (!r.empty()) q.rid = n > 1 ? fmt::format("{}-{}", r, k) : r;
      if (base.sampling.sampling_seed && k > 0) q.sampling.sampling_seed = *base.sampling.sampling_seed + uint64_t(k);
      g.reqs.push_back(std::move(q));
    }
  }
  return g;
}

}  // namespace sparrow::server
