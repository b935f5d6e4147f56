#!/usr/bin/env python3
"""Build tiny random Hugging Face MoE models and reference outputs ("goldens")
for Sparrow's C++ tests.

Regenerate (from the repository root; CPU only, no network needed):

    python3 python/make_test_models.py

All randomness is seeded (torch.manual_seed / torch.Generator with fixed
per-model seeds), so re-running with the same library versions reproduces the
committed files bit-for-bit.  The committed files under tests/testdata/models/
were produced with:

    transformers 5.23.0, torch 2.15.0 (CPU), safetensors 0.8.0, Python 3.11

(Also recorded inside every golden.json.)  Other versions may change the RNG
stream or numerics slightly; if you regenerate with different versions, commit
all four model directories together.

For each model <name> in {qwen3_moe, qwen2_moe, mixtral, olmoe} it writes
tests/testdata/models/<name>/:

  config.json        exactly what HF `config.save_pretrained` writes (dtype
                     bfloat16).  qwen3_moe and olmoe keep the transformers-v5
                     `rope_parameters` dict; qwen2_moe and mixtral are rewritten
                     to the older top-level `rope_theta` spelling (v4 style).
  model.safetensors  bf16 weights, with the tensor names/shapes of the real hub
                     checkpoints (per-expert tensors, Mixtral's
                     block_sparse_moe.experts.N.w1/w2/w3, no lm_head when tied).
                     transformers 5 holds experts fused internally
                     (experts.gate_up_proj [E,2I,H], experts.down_proj [E,H,I])
                     so we convert explicitly to the hub layout.
  golden.json        teacher-forced log-probs, top-5 per position and a 16-token
                     greedy continuation, all computed in float32 (eager
                     attention, eager experts) from the bf16-rounded weights.

Every model is verified by loading the written directory back with
AutoModelForCausalLM.from_pretrained and checking its logits equal those of the
in-memory model (proves the names/layout/config are what HF itself loads).

golden.json schema:
{
  "model_type": str, "transformers_version": str, "torch_version": str,
  "prompts": [
    {
      "input_ids": [int, ...],
      "input_logprobs": [null, lp_1, ...],   # lp_i = log P(ids[i] | ids[:i])
      "top5": [[[token_id, logprob] x5, sorted desc] for each position i],
                                             # distribution of token i+1 given ids[:i+1]
      "greedy": {
        "output_ids": [16 ints],             # argmax continuation, full recompute
        "output_logprobs": [16 floats],      # logprob of each chosen token
        "top2_margin": [16 floats]           # logprob(top1) - logprob(top2)
      }
    }, ...
  ]
}
Floats are repr() of the Python float of the exact float32 value.
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    AutoModelForCausalLM,
    MixtralConfig,
    OlmoeConfig,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_checkpoint import to_hub_state_dict, verify_reload  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_ROOT = os.path.join(REPO_ROOT, "tests", "testdata", "models")

PROMPT_LENGTHS = [1, 5, 17, 40, 70]
GREEDY_STEPS = 16

COMMON = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
    use_cache=True,
)

# name -> (config class, config kwargs, seed, rope style written to config.json)
SPECS = {
    "qwen3_moe": (
        Qwen3MoeConfig,
        dict(
            vocab_size=512,
            num_hidden_layers=3,
            num_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            intermediate_size=96,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False,
            attention_bias=False,
        ),
        1001,
        "rope_parameters",
    ),
    "qwen2_moe": (
        Qwen2MoeConfig,
        dict(
            vocab_size=384,
            num_hidden_layers=2,
            num_experts=8,
            num_experts_per_tok=3,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=64,
            intermediate_size=96,  # unused (no dense layers), kept explicit
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True,
            use_sliding_window=False,
        ),
        1002,
        "rope_theta",
    ),
    "mixtral": (
        MixtralConfig,
        dict(
            vocab_size=448,
            num_hidden_layers=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            intermediate_size=32,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False,
            sliding_window=None,
        ),
        1003,
        "rope_theta",
    ),
    "olmoe": (
        OlmoeConfig,
        dict(
            vocab_size=512,
            num_hidden_layers=2,
            num_experts=8,
            num_experts_per_tok=2,
            intermediate_size=32,
            norm_topk_prob=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
            clip_qkv=None,
        ),
        1004,
        "rope_parameters",
    ),
}

# Init scales: weight std = GAIN / sqrt(fan_in).  Tuned so that logits have a
# spread of several nats, greedy top-2 margins are mostly >> 0.05 and routers
# make clear but varied choices.
GAIN = 1.0
ROUTER_GAIN = 4.0
LM_HEAD_GAIN = 5.0
EMBED_STD = 1.0


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    tied = model.config.tie_word_embeddings
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            if name.endswith("norm.weight") or "layernorm" in name:
                v = 1.0 + 0.1 * torch.randn(shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.1 * torch.randn(shape, generator=g)
            elif "embed_tokens" in name:
                # Tied embeddings double as lm_head: use the lm_head scale.
                std = LM_HEAD_GAIN / math.sqrt(shape[-1]) if tied else EMBED_STD
                v = std * torch.randn(shape, generator=g)
            elif name.startswith("lm_head"):
                v = LM_HEAD_GAIN / math.sqrt(shape[-1]) * torch.randn(shape, generator=g)
            elif name.endswith("mlp.gate.weight"):
                v = ROUTER_GAIN / math.sqrt(shape[-1]) * torch.randn(shape, generator=g)
            else:
                v = GAIN / math.sqrt(shape[-1]) * torch.randn(shape, generator=g)
            # Round to bf16 so the fp32 references use exactly the saved values.
            p.copy_(v.to(torch.bfloat16).to(torch.float32))
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def f32(x):
    """Python float holding exactly the float32 value."""
    return float(np.float32(x))


@torch.no_grad()
def logprobs_of(model, ids):
    logits = model(torch.tensor([ids], dtype=torch.long)).logits[0].float()
    return logits, torch.log_softmax(logits, dim=-1)


@torch.no_grad()
def make_golden(model, model_type, prompts):
    res = []
    for ids in prompts:
        logits, lp = logprobs_of(model, ids)
        input_lps = [None] + [f32(lp[i - 1, ids[i]]) for i in range(1, len(ids))]
        top5 = []
        for i in range(len(ids)):
            vals, idx = torch.topk(lp[i], 5)
            top5.append([[int(t), f32(v)] for t, v in zip(idx, vals)])
        seq = list(ids)
        out_ids, out_lps, margins = [], [], []
        for _ in range(GREEDY_STEPS):
            _, lp_all = logprobs_of(model, seq)
            row = lp_all[-1]
            vals, idx = torch.topk(row, 2)
            nxt = int(torch.argmax(row))
            assert nxt == int(idx[0])
            out_ids.append(nxt)
            out_lps.append(f32(row[nxt]))
            margins.append(f32(vals[0] - vals[1]))
            seq.append(nxt)
        res.append(
            dict(
                input_ids=list(ids),
                input_logprobs=input_lps,
                top5=top5,
                greedy=dict(output_ids=out_ids, output_logprobs=out_lps, top2_margin=margins),
            )
        )
    return dict(
        model_type=model_type,
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
        prompts=res,
    )


@torch.no_grad()
def router_stats(model, prompts):
    """Gap between k-th and (k+1)-th router logit, and expert usage."""
    k = model.config.num_experts_per_tok
    gaps, counts = [], None
    captured = []
    hooks = []
    for name, mod in model.named_modules():
        if name.endswith("mlp.gate") and hasattr(mod, "weight") and mod.weight.dim() == 2 and mod.weight.shape[0] > 1:
            hooks.append(mod.register_forward_hook(lambda m, i, o: captured.append(o[0].detach())))
    for ids in prompts:
        model(torch.tensor([ids]))
    for h in hooks:
        h.remove()
    for rl in captured:
        rl = rl.reshape(-1, rl.shape[-1]).float()
        s, idx = torch.sort(rl, dim=-1, descending=True)
        gaps.append((s[:, k - 1] - s[:, k]))
        c = torch.bincount(idx[:, :k].reshape(-1), minlength=rl.shape[-1])
        counts = c if counts is None else counts + c
    gaps = torch.cat(gaps)
    return gaps, counts


def rewrite_rope_to_legacy(cfg_path):
    with open(cfg_path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    assert rp.get("rope_type", "default") == "default", rp
    cfg["rope_theta"] = rp["rope_theta"]
    cfg["rope_scaling"] = None
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def build(name):
    cfg_cls, kw, seed, rope_style = SPECS[name]
    torch.manual_seed(seed)
    config = cfg_cls(**COMMON, **kw)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    )
    model.eval()
    init_weights(model, seed)
    model_type = config.model_type
    assert model_type == name, (model_type, name)

    out_dir = os.path.join(OUT_ROOT, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)

    # from_config(dtype=float32) set config.dtype to float32; declare bf16 like
    # real checkpoints (the weights in model.safetensors are bf16).
    model.config.dtype = torch.bfloat16
    # config.json: exactly what HF writes (optionally rewritten to legacy rope_theta).
    model.config.save_pretrained(out_dir)
    cfg_path = os.path.join(out_dir, "config.json")
    if rope_style == "rope_theta":
        rewrite_rope_to_legacy(cfg_path)

    sd = to_hub_state_dict(model, model_type)
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})

    g = torch.Generator().manual_seed(seed + 7)
    V = config.vocab_size
    prompts = [torch.randint(0, V, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]

    golden = make_golden(model, model_type, prompts)

    # Round trip: HF must load the written directory into an identical model.
    re, max_diff = verify_reload(
        model,
        out_dir,
        prompts + [prompts[-1] + golden["prompts"][-1]["greedy"]["output_ids"]],
        attn_implementation="eager",
        experts_implementation="eager",
    )
    theta_loaded = re.config.rope_parameters["rope_theta"]
    assert theta_loaded == kw["rope_parameters"]["rope_theta"], (theta_loaded, kw)
    golden_re = make_golden(re, model_type, prompts)
    assert golden_re == golden, f"{name}: golden differs after reload"

    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")

    # Summary statistics.
    margins = torch.tensor([m for p in golden["prompts"] for m in p["greedy"]["top2_margin"]])
    all_logits = torch.cat([logprobs_of(model, ids)[0] for ids in prompts])
    spread = (all_logits.max(-1).values - all_logits.min(-1).values).mean().item()
    std = all_logits.std(-1).mean().item()
    top1p = torch.cat([logprobs_of(model, ids)[1] for ids in prompts]).max(-1).values.exp().mean().item()
    gaps, counts = router_stats(model, prompts)
    sizes = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}
    print(f"== {name}: {sum(p.numel() for p in model.parameters())} params, tensors={len(sd)}, sizes={sizes}")
    print(
        f"   greedy top2 margin: mean={margins.mean():.3f} median={margins.median():.3f} "
        f"min={margins.min():.4f} frac<0.05={(margins < 0.05).float().mean():.3f} "
        f"frac<0.2={(margins < 0.2).float().mean():.3f}"
    )
    print(f"   logits: mean(max-min)={spread:.2f} mean std={std:.2f} mean top1 prob={top1p:.3f}")
    print(
        f"   router k/k+1 logit gap: mean={gaps.mean():.3f} min={gaps.min():.4f} "
        f"frac<0.01={(gaps < 0.01).float().mean():.3f}; expert usage={counts.tolist()}"
    )
    print(f"   reload max |dlogits| = {max_diff}")
    return golden


def main():
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    names = sys.argv[1:] or list(SPECS)
    for n in names:
        build(n)


if __name__ == "__main__":
    main()
