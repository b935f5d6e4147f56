#!/usr/bin/env bash
# Online vs offline throughput: `sparrow serve` measured with `sparrow bench-serving` (the
# SGLang bench_serving workload: random token ids, ignore_eos, exact lengths) against the same
# requests run in-process through generate_sync (`sparrow bench-serving --offline`).
# Target (the issue): server output throughput >= 90% of offline.
#
# Model: the OLMoE-1B-7B-0924 shape (../shared/assets/configs/olmoe-1b-7b-0924.json: hidden 2048,
# 64 experts top-8, vocab 50304) with dummy weights, REDUCED TO 2 LAYERS (num_hidden_layers 16 -> 2,
# written to a temp dir) so that a run takes about a minute on a 2-core CPU. Per-layer work is the
# real model's; the ratio server/offline is what this measures, not absolute model speed.
#
# Usage: bench/run_serving_bench.sh [output.json]   (default: bench/results/serving_cpu.json)
# Env: NUM_PROMPTS (64), INPUT_LEN (128), OUTPUT_LEN (32), CONCURRENCY (64), SPARROW (build/sparrow)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${1:-bench/results/serving_cpu.json}"
SPARROW="${SPARROW:-build/sparrow}"
NUM_PROMPTS="${NUM_PROMPTS:-64}"
INPUT_LEN="${INPUT_LEN:-128}"
OUTPUT_LEN="${OUTPUT_LEN:-32}"
CONCURRENCY="${CONCURRENCY:-64}"
SRC_CONFIG="$ROOT/../shared/assets/configs/olmoe-1b-7b-0924.json"

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

python3 - "$SRC_CONFIG" "$TMP/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["num_hidden_layers"] = 2  # reduced for a 2-core CPU; see the header
json.dump(c, open(sys.argv[2], "w"), indent=2)
EOF
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

BENCH_ARGS=(--dataset-name random --random-input-len "$INPUT_LEN" --random-output-len "$OUTPUT_LEN"
            --random-range-ratio 1.0 --num-prompts "$NUM_PROMPTS" --seed 1)

"$SPARROW" serve --load-format dummy --model-path "$TMP/config.json" --skip-tokenizer-init \
  --host 127.0.0.1 --port "$PORT" --log-interval 0 >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log"; echo "server died" >&2; exit 1; }
  sleep 0.5
done

"$SPARROW" bench-serving --backend sglang --host 127.0.0.1 --port "$PORT" "${BENCH_ARGS[@]}" \
  --max-concurrency "$CONCURRENCY" --output-file "$TMP/online.json"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

# Same requests (same seed), same model and engine defaults, no HTTP; run after the server
# is gone so the two never share the cores.
"$SPARROW" bench-serving --offline --load-format dummy --model-path "$TMP/config.json" "${BENCH_ARGS[@]}" \
  --output-file "$TMP/offline.json"

mkdir -p "$(dirname "$OUT")"
python3 - "$TMP/online.json" "$TMP/offline.json" "$OUT" <<'EOF'
import json, sys
on, off = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ratio = on["output_throughput"] / off["output_throughput"]
res = {
    "benchmark": "serving_vs_offline",
    "model": "olmoe-1b-7b-0924 shape, num_hidden_layers reduced 16 -> 2, dummy bf16 weights",
    "workload": {k: on[k] for k in ("num_prompts", "random_input_len", "random_output_len", "random_range_ratio",
                                    "max_concurrency", "request_rate")},
    "server_output_throughput_tok_s": on["output_throughput"],
    "offline_output_throughput_tok_s": off["output_throughput"],
    "ratio_server_over_offline": ratio,
    "target_ratio": 0.9,
    "meets_target": ratio >= 0.9,
    "online": {k: v for k, v in on.items() if k not in ("machine", "commit")},
    "offline": {k: v for k, v in off.items() if k not in ("machine", "commit")},
    "machine": on["machine"],
    "commit": on["commit"],
}
json.dump(res, open(sys.argv[3], "w"), indent=2)
print(json.dumps({k: res[k] for k in ("server_output_throughput_tok_s", "offline_output_throughput_tok_s",
                                      "ratio_server_over_offline", "meets_target")}, indent=2))
EOF
echo "wrote $OUT"
