#include "sparrow/engine/offline_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "sparrow/kernels/ops.h"

namespace sparrow {
namespace {

struct Sequence {
  const GenerateRequest* req;
  GenerateResult* result;
  int32_t req_slot = -1;
  std::vector<int32_t> tokens;  // prompt + generated
  bool finished = false;
};

bool is_stop(const Sequence& s, const std::vector<int64_t>& eos, int32_t tok) {
  if (!s.req->ignore_eos && std::find(eos.begin(), eos.end(), int64_t(tok)) != eos.end()) return true;
  const auto& st = s.req->stop_token_ids;
  return std::find(st.begin(), st.end(), tok) != st.end();
}

}  // namespace

OfflineEngine::OfflineEngine(const CausalLM& model, OfflineEngineOptions opts) : model_(model), opts_(opts) {
  if (opts_.max_context <= 0) opts_.max_context = std::max<int64_t>(model.config().max_position_embeddings, 1);
}

std::vector<GenerateResult> OfflineEngine::generate(const std::vector<GenerateRequest>& requests) {
  const ModelConfig& cfg = model_.config();
  const int64_t vocab = cfg.vocab_size;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t total_tokens = 0, max_step_tokens = 1;
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerateRequest& r = requests[i];
    SPARROW_REQUIRE(!r.input_ids.empty(), "request {}: the prompt is empty", i);
    for (int32_t id : r.input_ids)
      SPARROW_REQUIRE(id >= 0 && id < vocab, "request {}: token id {} is outside the vocabulary [0, {})", i, id, vocab);
    SPARROW_REQUIRE(r.max_new_tokens >= 0, "request {}: max_new_tokens must be >= 0", i);
    SPARROW_REQUIRE(r.temperature == 0.f, "request {}: only greedy decoding (temperature 0) is supported offline", i);
    SPARROW_REQUIRE(r.top_logprobs_num >= 0, "request {}: top_logprobs_num must be >= 0", i);
    SPARROW_REQUIRE(r.logprob_start_len >= -1 && r.logprob_start_len < int32_t(r.input_ids.size()),
                    "request {}: logprob_start_len {} must be in [-1, {})", i, r.logprob_start_len, r.input_ids.size());
    const int64_t need = int64_t(r.input_ids.size()) + r.max_new_tokens;
    SPARROW_REQUIRE(need <= opts_.max_context, "request {}: prompt ({}) + max_new_tokens ({}) exceeds the context length {}",
                    i, r.input_ids.size(), r.max_new_tokens, opts_.max_context);
    total_tokens += need;
  }
  std::vector<GenerateResult> results(requests.size());
  if (requests.empty()) return results;
  max_step_tokens = std::max<int64_t>(opts_.max_prefill_tokens, int64_t(requests.size()));

  KVPool kv(cfg.num_layers, total_tokens, cfg.num_kv_heads, cfg.head_dim, model_.dtype());
  ReqToTokenPool req_to_token(int32_t(requests.size()), opts_.max_context);
  Arena ws(model_.workspace_bytes(max_step_tokens));
  std::vector<Sequence> seqs(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    seqs[i].req = &requests[i];
    seqs[i].result = &results[i];
    seqs[i].req_slot = req_to_token.alloc();
    seqs[i].tokens = requests[i].input_ids;
    results[i].rid = requests[i].rid;
    results[i].prompt_tokens = int32_t(requests[i].input_ids.size());
    results[i].has_logprobs = requests[i].return_logprob;
    results[i].has_top_logprobs = requests[i].return_logprob && requests[i].top_logprobs_num > 0;
  }

  std::vector<float> logprob_row(static_cast<size_t>(vocab));
  // Consumes the logits row that predicts the token after `s.tokens[pos]`: records the input
  // logprob of tokens[pos+1] (if it is a prompt token in range), or picks the next token.
  auto consume_row = [&](Sequence& s, int32_t pos, const float* logits) {
    const GenerateRequest& r = *s.req;
    const int32_t n_prompt = int32_t(r.input_ids.size());
    const bool want_lp = r.return_logprob;
    if (want_lp) {
      const Tensor in(const_cast<float*>(logits), DType::kF32, {1, vocab});
      const Tensor out(logprob_row.data(), DType::kF32, {1, vocab});
      ops::log_softmax(in, out);
    }
    if (pos + 1 < n_prompt) {  // teacher-forced prompt position
      if (want_lp) {
        const int32_t tok = s.tokens[size_t(pos + 1)];
        s.result->input_token_logprobs.push_back({logprob_row[size_t(tok)], tok});
        if (r.top_logprobs_num > 0) s.result->input_top_logprobs.push_back(top_n(logprob_row.data(), vocab, r.top_logprobs_num));
      }
      return;
    }
    if (int32_t(s.result->output_ids.size()) >= r.max_new_tokens) {
      s.finished = true;
      return;
    }
    const int32_t tok = argmax_row(logits, vocab);
    s.tokens.push_back(tok);
    s.result->output_ids.push_back(tok);
    if (want_lp) {
      s.result->output_token_logprobs.push_back({logprob_row[size_t(tok)], tok});
      if (r.top_logprobs_num > 0) s.result->output_top_logprobs.push_back(top_n(logprob_row.data(), vocab, r.top_logprobs_num));
    }
    if (is_stop(s, cfg.eos_token_ids, tok)) {
      s.finished = true;
      s.result->finish = {FinishReason::Kind::kStop, 0, tok};
    } else if (int32_t(s.result->output_ids.size()) >= r.max_new_tokens) {
      s.finished = true;
    }
  };

  // Extend: prompts in chunks of whole sequences (a prompt longer than the budget is split).
  std::vector<int32_t> slots;
  for (Sequence& s : seqs) {
    const GenerateRequest& r = *s.req;
    if (r.return_logprob && r.logprob_start_len == 0) {
      s.result->input_token_logprobs.push_back({std::nullopt, r.input_ids[0]});
      if (r.top_logprobs_num > 0) s.result->input_top_logprobs.push_back(std::nullopt);
    }
  }
  size_t next = 0;
  int32_t next_pos = 0;
  while (next < seqs.size()) {
    ForwardBatch fb;
    fb.mode = ForwardMode::kExtend;
    std::vector<std::pair<Sequence*, int32_t>> row_owner;  // (sequence, position) per logits row
    while (next < seqs.size() && fb.num_tokens() < opts_.max_prefill_tokens) {
      Sequence& s = seqs[next];
      const int32_t n_prompt = int32_t(s.tokens.size());
      const int32_t n = int32_t(std::min<int64_t>(n_prompt - next_pos, opts_.max_prefill_tokens - fb.num_tokens()));
      slots.clear();
      SPARROW_CHECK(kv.alloc(n, slots), "KV pool exhausted");
      std::copy(slots.begin(), slots.end(), req_to_token.row(s.req_slot) + next_pos);
      const int32_t row0 = fb.num_tokens();
      fb.add_sequence(s.req_slot, next_pos, s.tokens.data() + next_pos, slots.data(), n);
      // Logits rows: the last prompt token always; every row from logprob_start_len-1 on
      // when input logprobs are requested.
      const GenerateRequest& r = *s.req;
      const int32_t first_lp = r.return_logprob && r.logprob_start_len >= 0 ? std::max(r.logprob_start_len - 1, 0) : n_prompt - 1;
      for (int32_t p = next_pos; p < next_pos + n; ++p)
        if (p >= first_lp) {
          fb.logit_rows.push_back(row0 + (p - next_pos));
          row_owner.push_back({&s, p});
        }
      next_pos += n;
      if (next_pos == n_prompt) { ++next; next_pos = 0; }
    }
    Buffer logits(DType::kF32, {int64_t(fb.logit_rows.size()), vocab});
    model_.forward(fb, kv, req_to_token, ws, logits.tensor());
    for (size_t i = 0; i < row_owner.size(); ++i)
      consume_row(*row_owner[i].first, row_owner[i].second, static_cast<const float*>(logits.tensor().row_ptr(int64_t(i))));
  }

  // Decode: every unfinished sequence advances one token per step.
  Buffer logits(DType::kF32, {int64_t(seqs.size()), vocab});
  for (;;) {
    ForwardBatch fb;
    fb.mode = ForwardMode::kDecode;
    std::vector<Sequence*> active;
    for (Sequence& s : seqs) {
      if (s.finished) continue;
      const int32_t pos = int32_t(s.tokens.size()) - 1;
      slots.clear();
      SPARROW_CHECK(kv.alloc(1, slots), "KV pool exhausted");
      req_to_token.row(s.req_slot)[pos] = slots[0];
      fb.add_sequence(s.req_slot, pos, &s.tokens[size_t(pos)], slots.data(), 1);
      fb.logit_rows.push_back(fb.num_tokens() - 1);
      active.push_back(&s);
    }
    if (active.empty()) break;
    const Tensor lg = logits.tensor().slice_rows(0, int64_t(active.size()));
    model_.forward(fb, kv, req_to_token, ws, lg);
    for (size_t i = 0; i < active.size(); ++i)
      consume_row(*active[i], int32_t(active[i]->tokens.size()) - 1, static_cast<const float*>(lg.row_ptr(int64_t(i))));
  }

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& r : results) {
    if (r.finish.kind == FinishReason::Kind::kLength) r.finish.length = int32_t(r.output_ids.size());
    r.e2e_latency_s = secs;
  }
  return results;
}

}  // namespace sparrow
