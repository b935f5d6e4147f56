#!/usr/bin/env python3
"""Hugging Face `tokenizers` encode throughput on one thread, the baseline for
bench/tokenizer_bench.cpp (run both through bench/run_tokenizer_bench.sh).

    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \\
        python3 python/bench_tokenizer_hf.py --tokenizer DIR [--tokenizer DIR2] FILE...

Every line of the files is encoded without special tokens, best of --passes passes. Two ways
are timed: a Python loop of Tokenizer.encode(line) (what a server does per request, including
the Python call overhead) and one encode_batch(lines) call (the fastest HF path; with
RAYON_NUM_THREADS=1 it stays on one thread). Prints JSON.
"""
import argparse
import json
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", action="append", required=True)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    lines = []
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        file_lines = text.split("\n")
        if text.endswith("\n"):
            file_lines.pop()  # the same lines std::getline sees
        lines.extend(file_lines)
    nbytes = sum(len(line.encode("utf-8")) for line in lines)
    out = {"benchmark": "tokenizer_encode", "implementation": f"hf-tokenizers {tokenizers.__version__}",
           "threads": 1, "rayon_num_threads": os.environ["RAYON_NUM_THREADS"], "lines": len(lines),
           "bytes": nbytes, "results": []}
    for d in args.tokenizer:
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        best_loop = best_batch = float("inf")
        ntok = 0
        for _ in range(args.passes):
            t0 = time.perf_counter()
            n = 0
            for line in lines:
                n += len(tok.encode(line, add_special_tokens=False).ids)
            best_loop = min(best_loop, time.perf_counter() - t0)
            ntok = n
            t0 = time.perf_counter()
            tok.encode_batch(lines, add_special_tokens=False)
            best_batch = min(best_batch, time.perf_counter() - t0)
        out["results"].append({"tokenizer": os.path.basename(os.path.normpath(d)), "tokens": ntok,
                               "mb_per_s_encode_loop": nbytes / best_loop / 1e6,
                               "mb_per_s_encode_batch": nbytes / best_batch / 1e6})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
