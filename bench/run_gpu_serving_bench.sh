#!/usr/bin/env bash
# Serving throughput on one GPU (issue: "serving throughput with the bench client at
# concurrency 16 and 128, random 1024-in/256-out, with TTFT and TPOT"): `sparrow serve
# --device cuda` on the Qwen3-30B-A3B shape with dummy bf16 weights, measured by
# `sparrow bench-serving` (SGLang's bench_serving workload: random token ids, ignore_eos,
# exact lengths). Runs on the device machine (docs/gpu.md); needs build/sparrow.
#
# Usage: bench/run_gpu_serving_bench.sh OUT_DIR   -> OUT_DIR/gpu_serving.json (+ server.log)
# Env: CONFIG (tests/testdata/configs/qwen3-30b-a3b.json), MEM_FRACTION (0.9), CONCURRENCY ("16 128"),
# EXTRA_BODY (JSON merged into every request, e.g. '{"sampling_params": {"temperature": 0.7}}';
# default: greedy, as SGLang's bench_serving), SERVER_FLAGS (a parallel layout, e.g.
# "--tp-size 2 --ep-size 2": one GPU per rank over NCCL; tokens/s per GPU is reported too),
# INPUT_LEN / OUTPUT_LEN (1024 / 256), NUM_PROMPTS (default: 2 x concurrency, at least 64)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${1:?usage: run_gpu_serving_bench.sh OUT_DIR}"
CONFIG="${CONFIG:-tests/testdata/configs/qwen3-30b-a3b.json}"
PORT=30011
# NVLink multicast stays off on shared machines (docs/gpu.md, "Multi-GPU").
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
build/sparrow serve ${SERVER_FLAGS:-} --device cuda --load-format dummy --model-path "$CONFIG" --skip-tokenizer-init \
  --mem-fraction-static "${MEM_FRACTION:-0.9}" --host 127.0.0.1 --port $PORT --log-interval 30 \
  > "$OUT_DIR/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $SERVER_PID 2>/dev/null || { tail -20 "$OUT_DIR/server.log"; echo "server died" >&2; exit 1; }
  sleep 0.5
done
results=()
for c in ${CONCURRENCY:-16 128}; do
  n=${NUM_PROMPTS:-$(( c * 4 < 64 ? 64 : c * 2 ))}
  build/sparrow bench-serving --backend sglang --host 127.0.0.1 --port $PORT --dataset-name random \
    --random-input-len "${INPUT_LEN:-1024}" --random-output-len "${OUTPUT_LEN:-256}" --random-range-ratio 1.0 --num-prompts $n --seed 1 \
    --max-concurrency $c --warmup-requests 2 ${EXTRA_BODY:+--extra-request-body "$EXTRA_BODY"} \
    --output-file "$OUT_DIR/serving_c$c.json" > "$OUT_DIR/bench_c$c.log" 2>&1
  echo "concurrency $c rc=$?"
  results+=("$OUT_DIR/serving_c$c.json")
done
python3 - "$OUT_DIR/gpu_serving.json" "$CONFIG" "${SERVER_FLAGS:-}" "${results[@]}" <<'PY'
import json, re, subprocess, sys, os
out, config, flags, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
m = re.search(r"--tp-size[ =](\d+)", flags)
gpus = int(m.group(1)) if m else 1
runs = [json.load(open(f)) for f in files if os.path.exists(f)]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,clocks.max.sm,clocks.max.mem,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
json.dump({"benchmark": "gpu_serving", "config": config, "load_format": "dummy", "dtype": "bfloat16", "gpu": gpu,
           "commit": os.environ.get("SPARROW_COMMIT", ""), "client": "sparrow bench-serving (SGLang bench_serving random workload)",
           "server_flags": flags, "gpus": gpus,
           "output_tokens_per_s_per_gpu": {str(r.get("max_concurrency")): r["output_throughput"] / gpus for r in runs},
           "runs": runs}, open(out, "w"), indent=2)
for r in runs:
    print(f"[{flags or 'tp1'}] concurrency {r.get('max_concurrency')}: output {r['output_throughput']:.0f} tok/s "
          f"({r['output_throughput'] / gpus:.0f} per GPU), "
          f"TTFT median {r.get('median_ttft_ms', 0):.0f} ms, TPOT median {r.get('median_tpot_ms', 0):.1f} ms")
PY
