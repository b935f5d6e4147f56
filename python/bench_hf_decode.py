#!/usr/bin/env python3
"""Reference decode throughput of HF transformers on one GPU, for the ratio in
bench/results/gpu_decode_*.json: the same config and batch sizes as
bench/gpu_decode_bench.cpp (random bf16 weights, random prompt tokens, greedy decode with
the model's KV cache), timed per step with CUDA synchronization.

    python3 python/bench_hf_decode.py --config tests/testdata/configs/qwen3-30b-a3b.json \
        --batches 1,8,32,128 --prompt 256 --steps 32 --out hf.json

Prints one JSON object (machine, transformers/torch versions, tok/s per batch).
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--out")
    a = ap.parse_args()
    cfg = AutoConfig.from_pretrained(a.config)
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.eval()
    load_s = time.time() - t0
    rows = []
    for b in [int(x) for x in a.batches.split(",")]:
        ids = torch.randint(0, cfg.vocab_size, (b, a.prompt), device="cuda")
        with torch.inference_mode():
            torch.cuda.synchronize()
            t = time.time()
            out = model(input_ids=ids, use_cache=True)
            torch.cuda.synchronize()
            prefill_s = time.time() - t
            cache = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            steps = []
            for s in range(a.steps):
                torch.cuda.synchronize()
                t = time.time()
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                torch.cuda.synchronize()
                if s >= 3:
                    steps.append(time.time() - t)
                cache = out.past_key_values
        med = statistics.median(steps)
        rows.append({"batch": b, "prefill_tokens_per_s": b * a.prompt / prefill_s,
                     "decode_step_median_ms": med * 1e3, "decode_tokens_per_s": b / med})
        print(f"HF batch {b}: {b / med:.1f} tok/s", flush=True)
        del cache, out
        torch.cuda.empty_cache()
    result = {"benchmark": "hf_transformers_decode", "config": a.config, "gpu": torch.cuda.get_device_name(),
              "transformers": transformers.__version__, "torch": torch.__version__, "dtype": "bfloat16",
              "prompt_tokens": a.prompt, "decode_steps": a.steps, "load_s": load_s,
              "method": "eager model() per step with DynamicCache; median wall time after 3 warm-up steps",
              "results": rows}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
