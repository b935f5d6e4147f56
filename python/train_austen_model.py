#!/usr/bin/env python3
"""Train Sparrow's default model: a small Qwen3-MoE on the Jane Austen corpus.

What it does (CPU only, no network):

  1. Reads the six public-domain novels in /work/shared/assets/corpus/austen/
     (override with --corpus), un-wraps the hard-wrapped lines (paragraphs are
     joined into single lines, separated by a blank line) and splits every book
     into train (first ~95% of its characters) and held-out (the last ~5%, cut
     at a paragraph boundary).  Held-out text is never seen by the tokenizer
     or the model.
  2. Trains a byte-level BPE tokenizer (HF `tokenizers`, GPT-2/Qwen-style
     ByteLevel pre-tokenizer + decoder, vocab 4096, specials <|endoftext|>,
     <|im_start|>, <|im_end|>) on the training split and writes tokenizer.json,
     tokenizer_config.json (eos/bos/pad = <|endoftext|>, ChatML chat_template
     like Qwen2.5 without tools) and generation_config.json.
  3. Builds a transformers Qwen3MoeForCausalLM (see MODEL_KW below: hidden 256,
     4 layers, 8 q / 2 kv heads of dim 32, 8 experts top-2 with
     moe_intermediate_size 128, tied embeddings) and trains it with AdamW
     (cosine LR with warmup), sequence length 256, Switch-style router
     load-balancing aux loss (output_router_logits, router_aux_loss_coef).
  4. Evaluates held-out token-level perplexity in fp32 and after rounding the
     weights to bf16, prints greedy and sampled continuations.
  5. Saves models/austen-moe/ in the Hugging Face hub layout: config.json
     (save_pretrained), model.safetensors (bf16, per-expert tensor names, via
     python/hf_checkpoint.py), tokenizer files, and verifies the directory
     loads back with AutoModelForCausalLM.from_pretrained with bit-identical
     logits.  Writes bench/results/austen_model_training.json and
     models/austen-moe/samples.json (the README is written by hand from them).

Regenerate (from the repository root):

    python3 python/train_austen_model.py            # full run, ~25 min on 2 cores
    python3 python/train_austen_model.py --bench    # only time a few steps

Expected time: ~1-2 s per optimizer step (16 x 256 tokens) on 2 contended CPU
cores; the default --steps was sized from a measured throughput to take about
20 minutes of training, plus ~1 minute for tokenizer, eval and saving.

Seeds: torch.manual_seed(SEED) before model init, a torch.Generator seeded with
SEED + 1 for batch sampling, SEED + 2 for sampled generations; the tokenizer
trainer is deterministic for a given input.  Bit-exact reproduction also needs
the same library versions (recorded in the results JSON) and thread count
(torch.set_num_threads(2)).
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3MoeConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_checkpoint import to_hub_state_dict, verify_reload  # noqa: E402

from safetensors.torch import save_file  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(REPO_ROOT, "..", "shared", "assets", "corpus", "austen")
DEFAULT_OUT = os.path.join(REPO_ROOT, "models", "austen-moe")
RESULTS_JSON = os.path.join(REPO_ROOT, "bench", "results", "austen_model_training.json")

SEED = 1234
HOLDOUT_FRAC = 0.05
VOCAB_SIZE = 4096
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS = "<|endoftext|>"
SEQ_LEN = 256
BATCH_SIZE = 16
MAX_POS = 1024
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MODEL_KW = dict(
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=32,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=128,
    intermediate_size=512,  # only used by dense (mlp_only) layers; there are none
    decoder_sparse_step=1,
    mlp_only_layers=[],
    norm_topk_prob=True,
    tie_word_embeddings=True,
    max_position_embeddings=MAX_POS,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    rms_norm_eps=1e-6,
    hidden_act="silu",
    attention_bias=False,
    attention_dropout=0.0,
    output_router_logits=True,
    router_aux_loss_coef=0.01,
    initializer_range=0.02,
    use_cache=True,
)

PEAK_LR = 2e-3
MIN_LR_FRAC = 0.1
WARMUP = 50
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0

PROMPTS = [
    "It is a truth universally acknowledged",
    "Elizabeth",
    "Mr. Darcy",
    "Emma Woodhouse, handsome, clever, and rich,",
]


# --------------------------------------------------------------------------- data
def unwrap(text):
    """Join hard-wrapped lines of each paragraph; paragraphs separated by '\\n\\n'."""
    paras = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        if lines:
            paras.append(" ".join(lines))
    return paras


def load_corpus(corpus_dir):
    """Returns [(book, train_text, heldout_text)].  Held-out = last ~5% of each
    book's characters, starting at a paragraph boundary."""
    books = []
    for fn in sorted(os.listdir(corpus_dir)):
        if not fn.endswith(".txt"):
            continue
        with open(os.path.join(corpus_dir, fn), encoding="utf-8") as f:
            paras = unwrap(f.read())
        total = sum(len(p) + 2 for p in paras)
        acc, cut = 0, len(paras)
        for i, p in enumerate(paras):
            if acc >= (1.0 - HOLDOUT_FRAC) * total:
                cut = i
                break
            acc += len(p) + 2
        books.append((fn[:-4], "\n\n".join(paras[:cut]) + "\n\n", "\n\n".join(paras[cut:]) + "\n"))
    return books


# ---------------------------------------------------------------------- tokenizer
def train_tokenizer(train_texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train_texts, trainer=trainer)
    return tok


def save_tokenizer(tok, out_dir):
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    eos_id = tok.token_to_id(EOS)
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": MAX_POS,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(tok.token_to_id(t)): {
                "content": t, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True,
            }
            for t in SPECIAL_TOKENS
        },
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(
            {"bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": eos_id,
             "transformers_version": transformers.__version__},
            f, indent=2,
        )
        f.write("\n")


def check_tokenizer(out_dir, tok, sample_text):
    hf = AutoTokenizer.from_pretrained(out_dir)
    ids = hf(sample_text)["input_ids"]
    assert ids == tok.encode(sample_text).ids, "AutoTokenizer and raw tokenizer disagree"
    assert hf.decode(ids) == sample_text, "decode(encode(x)) != x"
    assert hf.eos_token == EOS and hf.pad_token == EOS
    msgs = [{"role": "system", "content": "You are Jane Austen."},
            {"role": "user", "content": "Describe Mr. Darcy."}]
    chat = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    expect = ("<|im_start|>system\nYou are Jane Austen.<|im_end|>\n"
              "<|im_start|>user\nDescribe Mr. Darcy.<|im_end|>\n<|im_start|>assistant\n")
    assert chat == expect, repr(chat)
    chat_ids = hf.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    if isinstance(chat_ids, dict) or hasattr(chat_ids, "keys"):
        chat_ids = chat_ids["input_ids"]
    assert chat_ids.count(tok.token_to_id("<|im_start|>")) == 3, chat_ids
    print(f"tokenizer OK: AutoTokenizer loads, chat template -> {len(chat_ids)} ids")
    return hf


# -------------------------------------------------------------------------- model
def build_model(vocab_size, eos_id):
    config = Qwen3MoeConfig(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id,
                            pad_token_id=eos_id, **MODEL_KW)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                             attn_implementation="sdpa",
                                             experts_implementation=ARGS.experts_impl)
    return model.to(ARGS.device)


def lr_at(step, total, progress=None):
    """Linear warmup, then cosine from PEAK_LR to MIN_LR_FRAC * PEAK_LR.
    `progress` in [0, 1] overrides step/total for the cosine part (time budget)."""
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, total - WARMUP) if progress is None else progress
    t = min(1.0, max(0.0, t))
    return PEAK_LR * (MIN_LR_FRAC + (1 - MIN_LR_FRAC) * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "norm" in n else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=PEAK_LR, betas=(0.9, 0.95), eps=1e-8,
    )


def get_batch(data, gen):
    starts = torch.randint(0, len(data) - SEQ_LEN - 1, (BATCH_SIZE,), generator=gen)
    x = torch.stack([data[s: s + SEQ_LEN + 1] for s in starts.tolist()])
    return x.to(ARGS.device)


def train_steps(model, opt, data, gen, start, n, total, log_every=25, time_budget=None):
    """Runs up to n steps.  With time_budget (seconds), the cosine schedule
    follows progress = max(step fraction, elapsed / time_budget) and training
    stops once progress reaches 1, so a slow (contended) machine still ends
    on time with a fully decayed LR.  Returns (seconds, lm-loss history)."""
    model.train()
    t0 = time.time()
    hist = []
    for step in range(start, start + n):
        progress = None
        if time_budget:
            progress = max((step - WARMUP) / max(1, total - WARMUP), (time.time() - t0) / time_budget)
            if progress >= 1.0:
                break
        lr = lr_at(step, total, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        x = get_batch(data, gen)
        out = model(input_ids=x, labels=x)  # HF shifts labels internally
        loss = out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        aux = float(out.aux_loss.detach()) if out.aux_loss is not None else 0.0
        lm = float(loss) - MODEL_KW["router_aux_loss_coef"] * aux
        hist.append(lm)
        if (step + 1) % log_every == 0 or step == start:
            el = time.time() - t0
            print(f"step {step + 1}/{total} lm_loss {lm:.4f} aux {aux:.3f} gnorm {float(gn):.2f} "
                  f"lr {lr:.2e} {el / (step - start + 1):.2f}s/step", flush=True)
    return time.time() - t0, hist


@torch.no_grad()
def heldout_nll(model, heldout_ids):
    """Token-level NLL over the held-out text: each book's held-out ids are cut
    into non-overlapping SEQ_LEN-token windows (last one shorter); every token
    except the first of each window is predicted.  Returns (sum_nll, n_tokens)."""
    model.eval()
    tot, n = 0.0, 0
    for ids in heldout_ids:
        for s in range(0, len(ids) - 1, SEQ_LEN):
            w = ids[s: s + SEQ_LEN]
            if len(w) < 2:
                continue
            x = torch.tensor([w], device=ARGS.device)
            logits = model(input_ids=x).logits[0].float()
            lp = torch.log_softmax(logits[:-1], -1)
            tot += float(-lp.gather(1, x[0, 1:, None]).sum())
            n += len(w) - 1
    return tot, n


def round_to_bf16_(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


@torch.no_grad()
def samples(model, hf_tok, n_new=60):
    gen_seed = SEED + 2
    res = []
    model.eval()
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([hf_tok(prompt)["input_ids"]], device=ARGS.device)
        g = model.generate(ids, max_new_tokens=n_new, do_sample=False, pad_token_id=hf_tok.eos_token_id)
        greedy = hf_tok.decode(g[0, ids.shape[1]:])
        torch.manual_seed(gen_seed + i)
        s = model.generate(ids, max_new_tokens=n_new, do_sample=True, temperature=0.8, top_p=0.95,
                           top_k=0, pad_token_id=hf_tok.eos_token_id)
        sampled = hf_tok.decode(s[0, ids.shape[1]:])
        print(f"\n=== prompt: {prompt!r}\n--- greedy: {prompt}{greedy}\n--- sampled (T=0.8, top_p=0.95): {prompt}{sampled}")
        res.append({"prompt": prompt, "greedy": greedy, "sampled": sampled})
    return res


# --------------------------------------------------------------------------- main
def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=1000, help="maximum optimizer steps")
    ap.add_argument("--time-budget", type=float, default=1200.0,
                    help="training wall-time budget in seconds (0 = none: exactly --steps steps)")
    ap.add_argument("--bench", action="store_true", help="time a few steps and exit")
    ap.add_argument("--experts-impl", default="grouped_mm",
                    help="transformers experts_implementation (grouped_mm was ~3x faster than eager on CPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the GPU machine trains the same recipe in minutes)")
    ARGS = ap.parse_args()
    torch.set_num_threads(ARGS.threads)
    t_start = time.time()

    books = load_corpus(ARGS.corpus)
    for b, tr, ho in books:
        print(f"{b}: train {len(tr)} chars, held-out {len(ho)} chars")
    tok = train_tokenizer([tr for _, tr, _ in books])
    eos_id = tok.token_to_id(EOS)
    train_ids, heldout_ids = [], []
    for _, tr, ho in books:
        train_ids += tok.encode(tr).ids + [eos_id]
        heldout_ids.append(tok.encode(ho).ids)
    data = torch.tensor(train_ids, dtype=torch.long)
    n_ho = sum(len(h) for h in heldout_ids)
    ho_bytes = sum(len(ho.encode()) for _, _, ho in books)
    tr_bytes = sum(len(tr.encode()) for _, tr, _ in books)
    print(f"vocab {tok.get_vocab_size()}, train tokens {len(data)} ({tr_bytes / len(data):.2f} bytes/token), "
          f"held-out tokens {n_ho}")

    model = build_model(tok.get_vocab_size(), eos_id)
    n_params = sum(p.numel() for p in model.parameters())
    n_active = n_params - sum(
        p.numel() * (1 - MODEL_KW["num_experts_per_tok"] / MODEL_KW["num_experts"])
        for n, p in model.named_parameters() if ".experts." in n)
    print(f"params {n_params} (unique, tied embeddings), active/token ~{int(n_active)}")
    opt = make_optimizer(model)
    gen = torch.Generator().manual_seed(SEED + 1)

    if ARGS.bench:
        train_steps(model, opt, data, gen, 0, 2, 100, log_every=1)  # warm-up
        el, _ = train_steps(model, opt, data, gen, 2, 8, 100, log_every=100)
        print(f"BENCH {ARGS.experts_impl}: {el / 8:.3f} s/step, {8 * BATCH_SIZE * SEQ_LEN / el:.0f} tok/s")
        return

    os.makedirs(ARGS.out, exist_ok=True)
    for f in os.listdir(ARGS.out):
        if f != "README.md":
            os.remove(os.path.join(ARGS.out, f))
    save_tokenizer(tok, ARGS.out)
    hf_tok = check_tokenizer(ARGS.out, tok, books[0][2][:2000])

    train_time, hist = train_steps(model, opt, data, gen, 0, ARGS.steps, ARGS.steps,
                                   time_budget=ARGS.time_budget or None)
    steps = len(hist)
    tokens_seen = steps * BATCH_SIZE * SEQ_LEN
    print(f"trained {steps} steps, {tokens_seen} tokens ({tokens_seen / len(data):.2f} epochs) "
          f"in {train_time:.0f}s")

    model.eval()
    nll, n = heldout_nll(model, heldout_ids)
    ppl32 = math.exp(nll / n)
    bpb32 = nll / math.log(2) / ho_bytes
    round_to_bf16_(model)
    nll16, _ = heldout_nll(model, heldout_ids)
    ppl16 = math.exp(nll16 / n)
    bpb16 = nll16 / math.log(2) / ho_bytes
    print(f"held-out ppl fp32 {ppl32:.3f} ({bpb32:.4f} bits/byte), bf16 {ppl16:.3f} ({bpb16:.4f} bits/byte), "
          f"{n} predicted tokens")

    # Save in hub format.  The in-memory model now holds the bf16-rounded weights. Checks
    # and samples from here on run on the CPU, whichever device trained.
    model = model.to("cpu")
    ARGS.device = "cpu"
    model.config.dtype = torch.bfloat16
    model.config.save_pretrained(ARGS.out)
    sd = to_hub_state_dict(model)
    save_file(sd, os.path.join(ARGS.out, "model.safetensors"), metadata={"format": "pt"})
    check_inputs = [heldout_ids[0][:SEQ_LEN], tok.encode(PROMPTS[0]).ids]
    re, max_diff = verify_reload(model, ARGS.out, check_inputs, attn_implementation="sdpa",
                                 experts_implementation=ARGS.experts_impl)
    print(f"reload OK: {len(sd)} tensors, max |dlogits| = {max_diff}")
    names = sorted(sd)
    assert "model.layers.0.mlp.experts.0.gate_proj.weight" in sd and "model.layers.0.mlp.gate.weight" in sd
    assert "lm_head.weight" not in sd

    # Router usage on held-out text (fraction of top-k slots per expert).
    usage = router_usage(re, heldout_ids[0][:SEQ_LEN * 4])
    print("expert usage per layer (share of top-k slots):", usage)

    smp = samples(re, hf_tok)
    with open(os.path.join(ARGS.out, "samples.json"), "w") as f:
        json.dump(smp, f, indent=2)
        f.write("\n")

    sizes = {f: os.path.getsize(os.path.join(ARGS.out, f)) for f in sorted(os.listdir(ARGS.out))}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    results = {
        "model": "models/austen-moe",
        "architecture": "Qwen3MoeForCausalLM",
        "config": {k: v for k, v in MODEL_KW.items() if k not in ("use_cache",)},
        "vocab_size": tok.get_vocab_size(),
        "params": n_params,
        "params_active_per_token_approx": int(n_active),
        "safetensors_tensors": len(names),
        "steps": steps,
        "max_steps": ARGS.steps,
        "time_budget_s": ARGS.time_budget,
        "batch_size": BATCH_SIZE,
        "seq_len": SEQ_LEN,
        "tokens_seen": tokens_seen,
        "train_tokens": int(len(data)),
        "epochs": tokens_seen / len(data),
        "heldout": "last ~5% of each of the six novels (paragraph-aligned)",
        "heldout_tokens_predicted": n,
        "heldout_bytes": ho_bytes,
        "heldout_ppl_fp32": ppl32,
        "heldout_ppl_bf16": ppl16,
        "heldout_bits_per_byte_fp32": bpb32,
        "heldout_bits_per_byte_bf16": bpb16,
        "final_train_lm_loss_avg_last50": sum(hist[-50:]) / len(hist[-50:]),
        "optimizer": {"name": "AdamW", "peak_lr": PEAK_LR, "min_lr_frac": MIN_LR_FRAC, "warmup": WARMUP,
                      "schedule": "cosine", "weight_decay": WEIGHT_DECAY, "betas": [0.9, 0.95],
                      "grad_clip": GRAD_CLIP},
        "train_wall_s": train_time,
        "total_wall_s": time.time() - t_start,
        "s_per_step": train_time / steps,
        "train_tokens_per_s": tokens_seen / train_time,
        "machine": {"cpu": cpu_name(), "torch_threads": ARGS.threads, "os_cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "attn_implementation": "sdpa",
        "experts_implementation": ARGS.experts_impl,
        "expert_usage_heldout": usage,
        "file_sizes": sizes,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "tokenizers": __import__("tokenizers").__version__},
        "seed": SEED,
        "commit": commit,
    }
    os.makedirs(os.path.dirname(RESULTS_JSON), exist_ok=True)
    with open(RESULTS_JSON, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(json.dumps({k: results[k] for k in ("params", "steps", "tokens_seen", "train_wall_s",
                                              "heldout_ppl_fp32", "heldout_ppl_bf16", "file_sizes")}, indent=1))


@torch.no_grad()
def router_usage(model, ids):
    k = model.config.num_experts_per_tok
    out = model(input_ids=torch.tensor([ids]), output_router_logits=True)
    usage = []
    for rl in out.router_logits:
        rl = rl.reshape(-1, rl.shape[-1])
        idx = rl.topk(k, -1).indices.reshape(-1)
        c = torch.bincount(idx, minlength=rl.shape[-1]).float()
        usage.append([round(float(v), 3) for v in c / c.sum()])
    return usage


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
