"""Writes the tiny safetensors fixtures under tests/testdata/safetensors/ with the reference
`safetensors` package, so the C++ reader is checked against files it did not write.

Regenerate (deterministic output):  python python/make_safetensors_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "testdata", "safetensors")


def tensors():
    # Values are simple functions of the index so the C++ test can recompute them.
    return {
        "model.embed_tokens.weight": (torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5).to(torch.bfloat16),
        "model.norm.weight": torch.arange(4, dtype=torch.float32) + 1.0,
        "model.layers.0.self_attn.q_proj.weight": (torch.arange(8, dtype=torch.float32).reshape(2, 4) - 4).to(torch.float16),
        "model.layers.0.self_attn.q_proj.bias": torch.tensor([7, -7], dtype=torch.int64),
        "model.layers.0.mlp.experts.gate_up_proj": torch.arange(2 * 3 * 2, dtype=torch.int32).reshape(2, 3, 2),
        "model.layers.0.extra.f64": torch.tensor([1.5, 2.5], dtype=torch.float64),  # valid, unsupported dtype
    }


def main():
    t = tensors()
    single = os.path.join(ROOT, "single")
    os.makedirs(single, exist_ok=True)
    save_file(t, os.path.join(single, "model.safetensors"), metadata={"format": "pt"})

    sharded = os.path.join(ROOT, "sharded")
    os.makedirs(sharded, exist_ok=True)
    names = sorted(t)
    shards = [names[:3], names[3:]]
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: t[n] for n in part}, os.path.join(sharded, fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
