#!/usr/bin/env bash
# The multi-GPU run (issue: "the parity matrix and scaling on several H200s over NCCL"), on
# a device machine with 2+ GPUs (docs/gpu.md, "Multi-GPU"). Builds like gpu_device_run.sh,
# then runs the steps named in STEPS (default "tests parity decode"):
#   tests    the GPU tests that need 2+ GPUs: NCCL communicator (2 ranks, uneven and zero
#            counts), the layout recipes against TP1 on the test models, refusals
#   parity   `sparrow parity --device cuda` on the Qwen3-30B-A3B shape (dummy bf16): the seed's
#            four recipes with both MoE backends (none, alltoall), TP2 (none) as the baseline,
#            plus TP1 on one GPU -> $OUT/parity.json
#            (PARITY_FLAGS="--share-one-gpu": every rank on GPU 0, for a one-GPU machine)
#   parity_det  the same with --enable-deterministic-inference in every recipe: all must give
#            TP1's bits -> $OUT/parity_deterministic.json
#   decode   gpu_decode_bench over LAYOUTS (default 1x1,2x1,2x2: TPxEP) -> $OUT/gpu_decode_multi.json
#   serving  bench/run_gpu_serving_bench.sh at concurrency 64 and 256 for each of SERVING
#            (";"-separated server flag sets; default TP1, TP2, TP2+EP2, TP2+DP2 with DP
#            attention) -> $OUT/serving_<i>.json
# Usage (from the checkout copy): OUT=$OUT scripts/gpu_multi_run.sh DEPS_DIR
parity() {  # $1: output name, $2: extra flags for every recipe
  timeout 560 build/sparrow parity --device cuda ${PARITY_FLAGS:-} --model-path $CONFIG --load-format dummy \
    --max-new-tokens 16 --recipe "tp2=--tp-size 2 $2" --recipe "tp1=--tp-size 1 $2" \
    --recipe "tp2+dp2+dp-attention=--tp-size 2 --dp-size 2 --enable-dp-attention $2" \
    --recipe "tp2+ep2=--tp-size 2 --ep-size 2 $2" \
    --recipe "tp2+dp2+ep2+dp-attention=--tp-size 2 --dp-size 2 --ep-size 2 --enable-dp-attention $2" \
    --recipe "tp2 alltoall=--tp-size 2 --moe-a2a-backend alltoall $2" \
    --recipe "tp2+dp2+dp-attention alltoall=--tp-size 2 --dp-size 2 --enable-dp-attention --moe-a2a-backend alltoall $2" \
    --recipe "tp2+ep2 alltoall=--tp-size 2 --ep-size 2 --moe-a2a-backend alltoall $2" \
    --recipe "tp2+dp2+ep2+dp-attention alltoall=--tp-size 2 --dp-size 2 --ep-size 2 --enable-dp-attention --moe-a2a-backend alltoall $2" \
    --json-output "$OUT/$1.json" > "$OUT/$1.log" 2>&1
  echo "$1 rc=$?"
  grep -vE "^\[sparrow|^parity: running" "$OUT/$1.log" | tail -24 | head -12
}
set -uo pipefail
deps=${1:-.deps}
OUT=${OUT:-/tmp/sparrow_out}
mkdir -p "$OUT"
# NVLink multicast stays off: it can take a shared host's GPUs out of service (KINDS.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
STEPS=${STEPS:-tests parity parity_det decode}
CONFIG=tests/testdata/configs/qwen3-30b-a3b.json
run_tests=0
case " $STEPS " in *" tests "*) run_tests=1 ;; esac
# Build (and the multi-GPU tests, or none) through the one-GPU runbook script.
filter='Models/GpuLayouts.*:GpuLayoutLimits.*:Nccl*'
[ $run_tests = 1 ] || filter='NoSuchTest'
SPARROW_DEVICE_BENCHES=none SPARROW_DEVICE_CPU_TESTS=0 SPARROW_GPU_TEST_FILTER="$filter" \
  bash scripts/gpu_device_run.sh "$deps" | grep -vE "^\[sparrow INFO\] device|bench none|bench_none" || true
[ -x build/sparrow ] || { echo "no build"; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
[ $run_tests = 1 ] && grep -E "^\[gpu (layouts|deterministic)|^\[  (FAILED|PASSED) " "$OUT/gpu_tests.log"
nvidia-smi topo -m > "$OUT/topology.txt" 2>&1
for step in $STEPS; do
  t0=$(date +%s)
  case $step in
    tests) ;;
    parity) parity parity "" ;;
    parity_det) parity parity_deterministic --enable-deterministic-inference ;;
    decode)
      timeout 560 build/bench/gpu_decode_bench --layouts "${LAYOUTS:-1x1,2x1,2x2}" --batches "${BATCHES:-1,8,32,128}" \
        --out "$OUT/gpu_decode_multi.json" > "$OUT/bench_decode.log" 2>&1
      echo "decode rc=$?"
      grep -E "^tp " "$OUT/bench_decode.log" ;;
    serving)
      IFS=';' read -ra sets <<< "${SERVING:---tp-size 1;--tp-size 2;--tp-size 2 --ep-size 2;--tp-size 2 --dp-size 2 --enable-dp-attention}"
      i=0
      for flags in "${sets[@]}"; do
        mkdir -p "/tmp/serving_$i"
        SERVER_FLAGS="$flags" CONCURRENCY="${CONCURRENCY:-64 256}" timeout 560 bash bench/run_gpu_serving_bench.sh "/tmp/serving_$i" |
          grep -E "concurrency|died"
        cp "/tmp/serving_$i/gpu_serving.json" "$OUT/serving_$i.json" 2>/dev/null || tail -5 "/tmp/serving_$i/server.log"
        i=$((i + 1))
      done ;;
  esac
  echo "step $step: $(( $(date +%s) - t0 )) s"
done
