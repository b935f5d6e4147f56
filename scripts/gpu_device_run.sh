#!/usr/bin/env bash
# Runs on the device machine (docs/gpu.md): unpacks the carried Debian -dev packages,
# builds the CUDA targets, runs the GPU tests and the benchmarks named in
# SPARROW_DEVICE_BENCHES (default "moe"; any of moe, decode, hf). Writes logs and JSON
# under $OUT. Usage (from the checkout copy): scripts/gpu_device_run.sh DEPS_DIR
set -uo pipefail
deps=${1:-.deps}
OUT=${OUT:-/tmp/sparrow_out}
mkdir -p "$OUT"
. "$(dirname "$0")/gpu_env.sh" "$deps"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
t0=$(date +%s)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/tmp/deps/usr > "$OUT/build.log" 2>&1 &&
  ninja -C build sparrow sparrow_gpu_tests gpu_moe_layer_bench gpu_decode_bench >> "$OUT/build.log" 2>&1
rc=$?
echo "build rc=$rc in $(( $(date +%s) - t0 )) s"
if [ $rc -ne 0 ]; then tail -60 "$OUT/build.log"; exit 1; fi
timeout 300 build/tests/sparrow_gpu_tests ${SPARROW_GPU_TEST_FILTER:+--gtest_filter=$SPARROW_GPU_TEST_FILTER} \
  --gtest_output=json:"$OUT/gpu_tests.json" > "$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"
grep -E "^\[  (FAILED|PASSED|  OK) |Failure|error|Expected|Which is|device:|dlogprob" "$OUT/gpu_tests.log" | head -80
export SPARROW_COMMIT=${SPARROW_COMMIT:-$(cat COMMIT 2>/dev/null)}
for b in ${SPARROW_DEVICE_BENCHES:-moe}; do
  case $b in
    moe) timeout 180 build/bench/gpu_moe_layer_bench "$OUT/gpu_moe_layer.json" > "$OUT/bench_moe.log" 2>&1 ;;
    decode) timeout 400 build/bench/gpu_decode_bench --out "$OUT/gpu_decode.json" > "$OUT/bench_decode.log" 2>&1 ;;
    hf) PYTHONUNBUFFERED=1 timeout 400 python3 python/bench_hf_decode.py --config tests/testdata/configs/qwen3-30b-a3b.json \
          --out "$OUT/hf_decode.json" > "$OUT/bench_hf.log" 2>&1 ;;
  esac
  echo "bench $b rc=$?"
  tail -4 "$OUT/bench_$b.log"
done
# The CPU suite in the same CUDA-enabled build (what `scripts/test` runs, GPU tests excluded).
if [ "${SPARROW_DEVICE_CPU_TESTS:-1}" = 1 ]; then
  ninja -C build sparrow_tests >> "$OUT/build.log" 2>&1 && echo "cpu tests built" &&
    timeout 200 ctest --test-dir build -j 16 --timeout 120 -LE gpu > "$OUT/cpu_ctest.log" 2>&1
  echo "cpu ctest rc=$?"
  tail -6 "$OUT/cpu_ctest.log"
fi
