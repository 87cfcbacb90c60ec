#!/usr/bin/env bash
# Build the CUDA wheel of llama-cpp-python with the same command Dockerfile.cuda runs, outside
# Docker, and check what came out: libggml-cuda is there, it holds code for every requested
# architecture, and it links cuBLAS and the CUDA runtime. It does not need a GPU.
#
#   scripts/check_cuda_build.sh [WORKDIR]        (default: ./cuda-build, kept for reruns)
#   SKIP_BUILD=1 scripts/check_cuda_build.sh DIR  (check the wheel a previous run left in DIR)
#
# Environment: CUDA_HOME (default /usr/local/cuda), CUDA_ARCHS (default "75;86;89"),
# LLAMA_CPP_PYTHON_VERSION (default: the version pyproject.toml pins).
#
# A CUDA "devel" image (the Dockerfile's build stage) has a complete toolkit. A machine with
# only nvcc (no cuBLAS headers, no libcuda stub) gets an overlay: a symlinked copy of
# CUDA_HOME plus cuBLAS from NVIDIA's own `nvidia-cublas` wheel of the same major version,
# and GGML_CUDA_NO_VMM=ON, since virtual memory management links the driver library itself.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mkdir -p "${1:-cuda-build}" && cd "${1:-cuda-build}" && pwd)"
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
archs="${CUDA_ARCHS:-75;86;89}"
version="${LLAMA_CPP_PYTHON_VERSION:-$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' "$here/pyproject.toml" | head -1)}"
nvcc="$cuda_home/bin/nvcc"
[[ -x "$nvcc" ]] || { echo "no nvcc at $nvcc: set CUDA_HOME" >&2; exit 1; }
cuda_major="$("$nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
echo "nvcc: $("$nvcc" --version | tail -2 | head -1)"
echo "llama-cpp-python $version, CUDA architectures $archs, work dir $work"

extra=""
toolkit="$cuda_home"
if [[ ! -f "$cuda_home/include/cublas_v2.h" ]]; then
    toolkit="$work/toolkit"
    echo "no cuBLAS in $cuda_home: building an overlay toolkit in $toolkit"
    rm -rf "$toolkit" "$work/cublas"
    cp -rs "$(readlink -f "$cuda_home")/." "$toolkit"
    pip download --quiet --no-deps --only-binary=:all: -d "$work/cublas-wheel" \
        "nvidia-cublas>=$cuda_major,<$((cuda_major + 1))"
    python3 -m zipfile -e "$work"/cublas-wheel/nvidia_cublas-*.whl "$work/cublas"
    cublas_root="$(dirname "$(find "$work/cublas" -name cublas_v2.h | head -1)")/.."
    cp "$cublas_root"/include/* "$toolkit/include/"
    mkdir -p "$toolkit/lib64"
    for lib in "$cublas_root"/lib/lib*.so.*; do
        cp "$lib" "$toolkit/lib64/"
        base="$(basename "$lib")"
        ln -sf "$base" "$toolkit/lib64/${base%%.so.*}.so"
    done
    extra=" -DCUDAToolkit_ROOT=$toolkit -DCMAKE_CUDA_COMPILER=$toolkit/bin/nvcc -DGGML_CUDA_NO_VMM=ON"
fi

# The Dockerfile's build command; only `extra` (the overlay above) differs.
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$archs -DGGML_NATIVE=OFF$extra"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
export PATH="$toolkit/bin:$PATH"
echo "CMAKE_ARGS=$CMAKE_ARGS"
start=$(date +%s)
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then  # SKIP_BUILD=1: check the wheel already in WORKDIR
    rm -rf "$work/wheel"
    # --no-cache-dir: pip would otherwise hand back a cached CPU wheel of the same version.
    pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$work/wheel" \
        "llama-cpp-python==$version" 2>&1 | tee "$work/build.log" | grep -v '^ *\[' || true
fi
took=$(($(date +%s) - start))
wheel="$(ls "$work"/wheel/llama_cpp_python-*.whl 2>/dev/null | head -1)"
[[ -n "$wheel" ]] || { echo "build failed after ${took}s; see $work/build.log" >&2; exit 1; }
echo "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in ${took}s"

# What the wheel holds.
rm -rf "$work/unpacked" && python3 -m zipfile -e "$wheel" "$work/unpacked"
cudalib="$(find "$work/unpacked" -name 'libggml-cuda.so*' | head -1)"
[[ -n "$cudalib" ]] || { echo "the wheel has no libggml-cuda: not a CUDA build" >&2; exit 1; }
echo "CUDA backend: ${cudalib#"$work/unpacked/"}"
# The GPU code each architecture got, listed by cuobjdump (NVIDIA's nvidia-cuda-cuobjdump
# wheel when the toolkit has none): one cubin per CUDA source file and architecture.
cuobjdump="$(command -v cuobjdump || true)"
[[ -x "$toolkit/bin/cuobjdump" ]] && cuobjdump="$toolkit/bin/cuobjdump"
if [[ -z "$cuobjdump" ]]; then
    pip download --quiet --no-deps --only-binary=:all: -d "$work/cuobjdump-wheel" \
        "nvidia-cuda-cuobjdump>=$cuda_major,<$((cuda_major + 1))"
    python3 -m zipfile -e "$work"/cuobjdump-wheel/nvidia_cuda_cuobjdump-*.whl "$work/cuobjdump"
    cuobjdump="$(find "$work/cuobjdump" -name cuobjdump -type f | head -1)"
    chmod +x "$cuobjdump"
fi
elfs="$("$cuobjdump" --list-elf "$cudalib")"
for arch in ${archs//;/ }; do
    count="$(grep -c "\.sm_${arch}\.cubin" <<<"$elfs" || true)"
    [[ "$count" -gt 0 ]] || { echo "no sm_$arch code in $cudalib" >&2; exit 1; }
    echo "sm_$arch: $count cubins"
done
needed="$(readelf -d "$cudalib" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
echo "links: $needed"
for lib in libcublas libcudart; do
    grep -q "$lib" <<<"$needed" || { echo "$cudalib does not link $lib" >&2; exit 1; }
done
echo "OK: CUDA wheel at $wheel"
