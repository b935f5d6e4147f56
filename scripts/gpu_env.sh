# Sourced by the device-machine scripts (gpu_device_run.sh, gpu_ab.sh): unpacks the carried
# Debian -dev packages of DEPS_DIR into /tmp/deps (fixing their pkg-config prefixes) and
# exports what the build needs to find them, and NCCL. Usage: . scripts/gpu_env.sh DEPS_DIR
mkdir -p /tmp/deps
for f in "${1:-.deps}"/*.deb; do dpkg -x "$f" /tmp/deps; done
sed -i "s|^prefix=/usr\$|prefix=/tmp/deps/usr|" /tmp/deps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc /tmp/deps/usr/share/pkgconfig/*.pc 2>/dev/null
export PKG_CONFIG_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu/pkgconfig:/tmp/deps/usr/share/pkgconfig
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=/tmp/deps/usr/bin/pkgconf
# NCCL: when the CUDA toolkit has none, the PyTorch wheel's copy (cmake/SparrowNccl.cmake).
nvcc_dir=$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")
if [ -z "${SPARROW_NCCL_ROOT:-}" ] && [ ! -f "$nvcc_dir/../include/nccl.h" ]; then
  SPARROW_NCCL_ROOT=$(python3 -c 'import nvidia.nccl; print(nvidia.nccl.__path__[0])' 2>/dev/null) && export SPARROW_NCCL_ROOT
fi
echo "SPARROW_NCCL_ROOT=${SPARROW_NCCL_ROOT:-} (empty: the toolkit's NCCL, if any)"
