#!/usr/bin/env bash
# A/B of kernel changes in one device call (docs/gpu.md, "Device runbook"): every folder
# under AB_DIR (default .scratch/ab) is an overlay of files (same relative paths as the repo)
# copied onto a copy of this tree; each variant is built and measured with the same
# benchmarks, one after another, so their medians compare on one machine. An empty overlay
# (a folder holding only .keep) is this tree as it is.
#
# Here:   mkdir -p .scratch/ab/base/src/sparrow/kernels/cuda .scratch/ab/new && touch .scratch/ab/new/.keep
#         git show HEAD:src/sparrow/kernels/cuda/gemm.cu > .scratch/ab/base/src/sparrow/kernels/cuda/gemm.cu
# Device: run(carry=[".deps", ".scratch/ab"], command="OUT=$OUT bash scripts/gpu_ab.sh .deps")
# Env: AB_DIR, AB_LAYERS (4: layers of the Qwen3-30B-A3B cut), AB_BATCHES (1,32,128),
#      AB_ROUNDS (1). Writes $OUT/moe_<v>_<round>.json, $OUT/dec_<v>_<round>.json, and prints
#      the MoE layer table and decode / prefill tok/s per variant.
set -uo pipefail
deps=${1:-.deps}
OUT=${OUT:-/tmp/sparrow_out}
ab=${AB_DIR:-.scratch/ab}
mkdir -p "$OUT"
. "$(dirname "$0")/gpu_env.sh" "$deps"
variants=$(ls "$ab")
for v in $variants; do
  rm -rf "/tmp/ab_$v" && mkdir -p "/tmp/ab_$v"
  tar --exclude=./build --exclude=./.deps --exclude=./.scratch -cf - . | (cd "/tmp/ab_$v" && tar xf -)
  cp -r "$ab/$v/." "/tmp/ab_$v/"
  (cd "/tmp/ab_$v" && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/tmp/deps/usr > "$OUT/build_$v.log" 2>&1 &&
    ninja -C build gpu_moe_layer_bench gpu_decode_bench >> "$OUT/build_$v.log" 2>&1) || { tail -20 "$OUT/build_$v.log"; exit 1; }
done
python3 - "${AB_LAYERS:-4}" > /tmp/ab_cut.json <<'PY'
import json, sys
c = json.load(open("tests/testdata/configs/qwen3-30b-a3b.json")); c["num_hidden_layers"] = int(sys.argv[1]); print(json.dumps(c))
PY
for round in $(seq 1 "${AB_ROUNDS:-1}"); do
  for v in $variants; do
    b=/tmp/ab_$v/build
    timeout 120 "$b/bench/gpu_moe_layer_bench" "$OUT/moe_${v}_$round.json" > "/tmp/ab_moe_$v.log" 2>&1
    grep -E '^ +[0-9]+ ' "/tmp/ab_moe_$v.log" | sed "s/^/$v moe /"
    timeout 150 "$b/bench/gpu_decode_bench" --config /tmp/ab_cut.json --batches "${AB_BATCHES:-1,32,128}" --prompt 512 --steps 48 \
      --out "$OUT/dec_${v}_$round.json" 2>&1 | grep "^tp " | sed "s/^/$v /"
    python3 -c "import json; d = json.load(open('$OUT/dec_${v}_$round.json')); print('$v prefill tok/s', [round(r['prefill_tokens_per_s']) for r in d['results']])"
  done
done
