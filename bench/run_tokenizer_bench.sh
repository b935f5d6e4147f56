#!/usr/bin/env bash
# Encode throughput of Sparrow's tokenizer vs Hugging Face `tokenizers`, one thread each, on
# the Austen corpus (../shared/assets/corpus/austen, else the copy of Persuasion in test data).
# Writes bench/results/tokenizer_encode.json. Needs a built tree (scripts/build) and python3
# with `tokenizers`.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=(../shared/assets/corpus/austen/*.txt)
[ -f "${corpus[0]}" ] || corpus=(tests/testdata/corpus/persuasion.txt)
toks=(--tokenizer tests/testdata/tokenizers/qwen3 --tokenizer tests/testdata/tokenizers/deepseek_v3)
commit=$(git rev-parse --short HEAD)
ours=$(./build/bench/tokenizer_bench "${toks[@]}" --commit "$commit" "${corpus[@]}")
hf=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 python/bench_tokenizer_hf.py "${toks[@]}" "${corpus[@]}")
mkdir -p bench/results
python3 - "$ours" "$hf" > bench/results/tokenizer_encode.json <<'PY'
import json, sys
ours, hf = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert ours["bytes"] == hf["bytes"] and ours["lines"] == hf["lines"], "both must read the same text"
rows = []
for o, h in zip(ours["results"], hf["results"]):
    assert o["tokens"] == h["tokens"], f"token counts differ for {o['tokenizer']}"
    best_hf = max(h["mb_per_s_encode_loop"], h["mb_per_s_encode_batch"])
    rows.append({"tokenizer": o["tokenizer"], "tokens": o["tokens"],
                 "sparrow_mb_per_s": round(o["mb_per_s"], 2),
                 "hf_mb_per_s_encode_loop": round(h["mb_per_s_encode_loop"], 2),
                 "hf_mb_per_s_encode_batch": round(h["mb_per_s_encode_batch"], 2),
                 "ratio_vs_best_hf": round(o["mb_per_s"] / best_hf, 2)})
print(json.dumps({"benchmark": "tokenizer_encode", "threads": 1, "machine": ours["machine"],
                  "git_commit": ours["git_commit"], "corpus_lines": ours["lines"], "corpus_bytes": ours["bytes"],
                  "hf_tokenizers": hf["implementation"], "results": rows,
                  "sparrow_raw": ours, "hf_raw": hf}, indent=2))
PY
cat bench/results/tokenizer_encode.json
