#!/usr/bin/env bash
# The C++ rANS core under AddressSanitizer + UndefinedBehaviorSanitizer: builds the extension with
# both (gcc or clang), puts it in a temporary copy of the package, and runs the coder's tests
# (round trips, hostile headers, truncations, byte flips, corrupt streams, the reference's
# same-bytes tests) and the coder fuzz target's seeds and crashers against it. Any sanitizer
# report fails the run. CI-able: needs cmake, a C++20 compiler, nanobind and the test deps.
# With FUZZ_WORK=dir it then replays every target's corpus that
# `eval/fuzz.py --work dir` grew (coverage-guided, without sanitizers; the codecs' through the
# coder with their real tables) against the sanitized build
# (FUZZ_OUT: the report).
#
#   [FUZZ_WORK=/tmp/neurocodec-fuzz] tools/sanitize_coder.sh [build dir, default build/asan] [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/asan}
shift || true
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$SAN" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" >"$BUILD.log" 2>&1 || { cat "$BUILD.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" >>"$BUILD.log" 2>&1 || { cat "$BUILD.log"; exit 1; }

PKG=$(mktemp -d)
trap 'rm -rf "$PKG"' EXIT
cp -r src/neurocodec "$PKG/"
cp "$BUILD"/_rans*.so "$PKG/neurocodec/entropy/"
CXX_BIN=$(grep -m1 '^CMAKE_CXX_COMPILER:' "$BUILD/CMakeCache.txt" | cut -d= -f2)
# Python is not built with ASan: the runtime goes first; Python's own allocations are not leaks of ours.
export LD_PRELOAD="$("$CXX_BIN" -print-file-name=libasan.so) $("$CXX_BIN" -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
export SANITIZED_PKG="$PKG"
python - <<'PY'
import os, sys
import neurocodec.entropy._rans as r
assert r.__file__.startswith(os.environ["SANITIZED_PKG"]), f"not the sanitized build: {r.__file__}"
assert "libasan" in open("/proc/self/maps").read(), "AddressSanitizer is not loaded"
print("sanitized coder:", r.__file__, file=sys.stderr)
PY
python -m pytest -q -p no:cacheprovider tests/test_coder.py tests/test_reference.py \
  "tests/test_fuzz.py::test_coder_targets_on_seeds_mutations_and_crashers" "$@"
if [ -n "${FUZZ_WORK:-}" ]; then  # and the coder targets' corpora grown by eval/fuzz.py, replayed
  python eval/fuzz.py --replay --work "$FUZZ_WORK" --out "${FUZZ_OUT:-/tmp/neurocodec-fuzz-asan.json}"
fi
echo "no sanitizer reports"
