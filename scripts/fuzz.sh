#!/usr/bin/env bash
# Fuzz the native parsers under AddressSanitizer + UBSan with libFuzzer, for a bounded time.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30; needs clang-14 and libclang-rt-14-dev)
# Exits non-zero on any crash, sanitizer report or broken invariant; the reproducer is left in build/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
CXX="${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++)}"
mkdir -p build/fuzz
FLAGS=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
"$CXX" "${FLAGS[@]}" cpp_ext/instances.cpp cpp_ext/fuzz/fuzz_instances.cpp -o build/fuzz/instances
"$CXX" "${FLAGS[@]}" cpp_ext/base64.cpp cpp_ext/fuzz/fuzz_base64.cpp -o build/fuzz/base64
"$CXX" "${FLAGS[@]}" cpp_ext/http_request.cpp cpp_ext/fuzz/fuzz_http_request.cpp -o build/fuzz/http_request
"$CXX" "${FLAGS[@]}" cpp_ext/json_scan.cpp cpp_ext/fuzz/fuzz_json_scan.cpp -o build/fuzz/json_scan
for target in instances base64 http_request json_scan; do
  corpus="build/fuzz/corpus-$target"
  rm -rf "$corpus" && mkdir -p "$corpus" && cp tests/fuzz_corpus/$target/* "$corpus/"
  (cd build/fuzz && "./$target" -max_total_time="$SECONDS_PER_TARGET" -timeout=5 -rss_limit_mb=2048 \
      -print_final_stats=1 "corpus-$target")
done
echo "fuzzing found nothing in ${SECONDS_PER_TARGET}s per target"
