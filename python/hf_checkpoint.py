"""Shared helpers for writing Hugging Face hub-format MoE checkpoints.

transformers 5 holds MoE experts fused internally
(``mlp.experts.gate_up_proj`` [E, 2I, H] with the gate rows first, then up;
``mlp.experts.down_proj`` [E, H, I]), while checkpoints on the hub (and
Sparrow's loader) use one tensor per expert.  ``to_hub_state_dict`` converts
the in-memory state dict to the hub names; ``verify_reload`` proves the
written directory loads back through ``AutoModelForCausalLM.from_pretrained``
into an identical model.

Used by python/make_test_models.py and python/train_austen_model.py.
"""

import torch
from transformers import AutoModelForCausalLM


def to_hub_state_dict(model, model_type=None):
    """Convert transformers-5 internal (fused-expert) state dict to hub names.

    Returns bf16, contiguous tensors.  Tied lm_head is dropped.  Mixtral uses
    ``block_sparse_moe.experts.N.w1/w2/w3`` and ``block_sparse_moe.gate``;
    the Qwen/OLMoE families use ``mlp.experts.N.{gate,up,down}_proj`` and
    ``mlp.gate``.
    """
    model_type = model_type or model.config.model_type
    out = {}
    tied = model.config.tie_word_embeddings
    for k, v in model.state_dict().items():
        if tied and k == "lm_head.weight":
            continue
        if k.endswith("mlp.experts.gate_up_proj"):
            prefix = k[: -len("mlp.experts.gate_up_proj")]
            E, twoI, H = v.shape
            I = twoI // 2
            for e in range(E):
                gate, up = v[e, :I], v[e, I:]
                if model_type == "mixtral":
                    out[f"{prefix}block_sparse_moe.experts.{e}.w1.weight"] = gate
                    out[f"{prefix}block_sparse_moe.experts.{e}.w3.weight"] = up
                else:
                    out[f"{prefix}mlp.experts.{e}.gate_proj.weight"] = gate
                    out[f"{prefix}mlp.experts.{e}.up_proj.weight"] = up
            continue
        if k.endswith("mlp.experts.down_proj"):
            prefix = k[: -len("mlp.experts.down_proj")]
            for e in range(v.shape[0]):
                if model_type == "mixtral":
                    out[f"{prefix}block_sparse_moe.experts.{e}.w2.weight"] = v[e]
                else:
                    out[f"{prefix}mlp.experts.{e}.down_proj.weight"] = v[e]
            continue
        if model_type == "mixtral" and k.endswith("mlp.gate.weight"):
            out[k.replace("mlp.gate.weight", "block_sparse_moe.gate.weight")] = v
            continue
        assert "experts" not in k, k
        out[k] = v
    return {k: t.detach().to(torch.bfloat16).contiguous().clone() for k, t in out.items()}


@torch.no_grad()
def verify_reload(model, out_dir, inputs, **load_kwargs):
    """Load ``out_dir`` with AutoModelForCausalLM.from_pretrained (fp32) and
    check it equals the in-memory ``model``: same parameter names, bit-equal
    tensors, bit-equal logits on every id list in ``inputs``.

    ``model`` must already hold the bf16-rounded weights (in fp32).  Returns
    (reloaded_model, max_abs_logit_diff); raises AssertionError on mismatch.
    """
    re = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, **load_kwargs).eval()
    sd_mem, sd_re = model.state_dict(), re.state_dict()
    assert set(sd_mem) == set(sd_re), set(sd_mem) ^ set(sd_re)
    for k in sd_mem:
        assert torch.equal(sd_mem[k], sd_re[k]), k
    max_diff = 0.0
    for ids in inputs:
        a = model(torch.tensor([ids])).logits
        b = re(torch.tensor([ids])).logits
        max_diff = max(max_diff, float((a - b).abs().max()))
    assert max_diff == 0.0, f"{out_dir}: reloaded logits differ by {max_diff}"
    return re, max_diff
