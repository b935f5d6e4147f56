#!/usr/bin/env python3
"""Build tests/testdata/models/text_tiny/: a tiny random Qwen3-MoE with its own small
byte-level BPE tokenizer, so server tests can send text (the other tiny test models have
no tokenizer, and the Qwen3 tokenizer's 151k vocabulary would make a "tiny" model large).

Nothing is trained but the tokenizer: a ~512-token byte-level BPE (Qwen2-style
pre-tokenizer regex, NFC, ByteLevel) fitted on a few KB of Austen from
/work/shared/assets/corpus/austen (or $SPARROW_CORPUS_DIR), plus the ChatML special
tokens. The model is a 2-layer Qwen3-MoE (hidden 32, 4 experts, top-2) with seeded random
weights, saved in the hub layout through make_test_models' helpers.

Regenerate (repository root, CPU, no network):

    python3 python/make_text_test_model.py

Output (< 1 MB): config.json, model.safetensors, tokenizer.json, tokenizer_config.json
(ChatML chat_template, eos <|im_end|>), generation_config.json.
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, Qwen3MoeConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_test_models import init_weights, to_hub_state_dict  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "tests", "testdata", "models", "text_tiny")
CORPUS_DIR = os.environ.get("SPARROW_CORPUS_DIR", "/work/shared/assets/corpus/austen")
SEED = 2024
VOCAB = 512
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def corpus_text():
    text = ""
    for name in sorted(os.listdir(CORPUS_DIR)):
        with open(os.path.join(CORPUS_DIR, name), encoding="utf-8") as f:
            text += f.read()[20000:26000] + "\n"  # skip front matter; ~6 KB per book
    return text


def build_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([corpus_text()], trainer)
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    return tok


def main():
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    tok = build_tokenizer()
    eos = tok.token_to_id("<|im_end|>")
    eot = tok.token_to_id("<|endoftext|>")
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    os.makedirs(OUT_DIR)
    tok.save(os.path.join(OUT_DIR, "tokenizer.json"))
    with open(os.path.join(OUT_DIR, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "add_bos_token": False,
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": None,
                "chat_template": CHATML,
                "model_max_length": 1024,
                "tokenizer_class": "Qwen2Tokenizer",
            },
            f,
            indent=2,
        )
    with open(os.path.join(OUT_DIR, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [eos, eot], "pad_token_id": eot}, f, indent=2)

    torch.manual_seed(SEED)
    config = Qwen3MoeConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_hidden_layers=2,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=16,
        intermediate_size=48,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
        attention_bias=False,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=eot,
    )
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    init_weights(model, SEED)
    model.config.dtype = torch.bfloat16
    model.config.save_pretrained(OUT_DIR)
    # save_pretrained may also write a generation_config.json; keep ours.
    with open(os.path.join(OUT_DIR, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [eos, eot], "pad_token_id": eot}, f, indent=2)
    save_file(to_hub_state_dict(model, "qwen3_moe"), os.path.join(OUT_DIR, "model.safetensors"), metadata={"format": "pt"})

    sizes = {f: os.path.getsize(os.path.join(OUT_DIR, f)) for f in sorted(os.listdir(OUT_DIR))}
    assert sum(sizes.values()) < 1 << 20, sizes
    print(f"text_tiny: vocab {VOCAB}, eos {eos}, sizes {sizes}")
    print("sample:", tok.encode("It is a truth universally acknowledged").tokens)


if __name__ == "__main__":
    main()
