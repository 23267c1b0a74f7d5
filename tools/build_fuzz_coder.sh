#!/usr/bin/env bash
# Builds the C++ coder with edge-coverage callbacks for coverage-guided fuzzing (gcc or clang:
# -fsanitize-coverage=trace-pc), plus the bridge that feeds them to atheris's libFuzzer
# (tools/fuzz_cov_bridge.c). Use: python eval/fuzz.py --native build/fuzz ...
#
#   tools/build_fuzz_coder.sh [build dir, default build/fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/fuzz}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-fsanitize-coverage=trace-pc -g" \
  -DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY >"$BUILD.log" 2>&1 \
  || { cat "$BUILD.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" >>"$BUILD.log" 2>&1 || { cat "$BUILD.log"; exit 1; }
cc -shared -fPIC -O2 -o "$BUILD/libfuzz_cov_bridge.so" tools/fuzz_cov_bridge.c -ldl
ls "$BUILD"/_rans*.so "$BUILD/libfuzz_cov_bridge.so"
