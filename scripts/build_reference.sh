#!/usr/bin/env bash
# Build the reference: upstream llama.cpp's llama-bench and llama-server from the very
# source the installed llama-cpp-python vendors (its PyPI sdist carries vendor/llama.cpp),
# so benchmarks compare like with like. Built once into a cache folder and reused.
#
#   scripts/build_reference.sh [CACHE_DIR]      # prints the bin/ folder on success
#
# Needs cmake and a C++ compiler; fetches only the sdist, from the package registry.
set -euo pipefail

python=${PYTHON:-python3}
version=$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-qwen/reference}
dest="$cache/llama-cpp-python-$version"
bin="$dest/build/bin"

if [[ -x "$bin/llama-bench" && -x "$bin/llama-server" ]]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version" >&2
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
rm -rf "$dest/src"
mv "$work/llama_cpp_python-$version/vendor/llama.cpp" "$dest/src"

# Same CPU options llama-cpp-python's own build uses by default (native CPU, OpenMP).
cmake -S "$dest/src" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$dest/build" --config Release -j "$(nproc)" --target llama-bench llama-server >&2
echo "$bin"
