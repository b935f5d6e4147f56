#!/usr/bin/env bash
# Per-kernel GPU time of decode (docs/gpu.md): a LAYERS-layer cut of CONFIG (default the
# Qwen3-30B-A3B shape, 2 layers) through gpu_decode_bench, eager (no graphs) under Nsight
# Compute with only the duration metric, summarized per kernel; plus the same cut timed
# with and without CUDA graphs. Needs a build with gpu_decode_bench. Writes under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/sparrow_out}
config=${CONFIG:-tests/testdata/configs/qwen3-30b-a3b.json}
layers=${LAYERS:-2}
batch=${BATCH:-1}
python3 - "$config" "$layers" > /tmp/cut.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["num_hidden_layers"] = int(sys.argv[2]); print(json.dumps(c))
PY
for g in "" --disable-cuda-graph; do
  build/bench/gpu_decode_bench --config /tmp/cut.json --batches 1,8,64 --prompt 128 --steps 24 $g 2>&1 | grep "^batch" | sed "s/^/${g:-graphs} /"
done
timeout 300 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
  build/bench/gpu_decode_bench --config /tmp/cut.json --batches "$batch" --prompt 128 --steps 6 --disable-cuda-graph \
  > "$OUT/ncu_decode.txt" 2>&1
echo "ncu rc=$?"
grep -E "^\s+[a-z_:<>0-9 ,()A-Z]+\(|gpu__time_duration|Invocations" "$OUT/ncu_decode.txt" | head -5
