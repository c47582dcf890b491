#!/bin/bash
# tests/fuzz/run.sh [SECONDS] [BUILD_DIR]: builds the safetensors fuzz harness with clang
# (libFuzzer + ASan + UBSan) and fuzzes for SECONDS (default 180), starting from seeds/ (new
# interesting inputs go to BUILD_DIR/corpus, crashes to BUILD_DIR/crash-*). Prints the exec count.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-180}
out=${2:-$root/build-fuzz}
command -v clang >/dev/null || { echo "clang not found (Debian: apt-get install clang)" >&2; exit 2; }
mkdir -p "$out/corpus"
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/io/include" $(pkg-config --cflags libcjson) \
  "$here/fuzz_safetensors.c" "$root/io/safetensors.c" "$root/io/status.c" \
  $(pkg-config --libs libcjson) -lm -o "$out/fuzz_safetensors"
cd "$out"
./fuzz_safetensors -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
  -dict=<(printf '"dtype"\n"shape"\n"data_offsets"\n"__metadata__"\n"F32"\n"F16"\n"BF16"\n"F64"\n"I32"\n"U8"\n"BOOL"\n') \
  corpus "$here/seeds" 2>&1 | tee fuzz.log | grep -E "^#[0-9]+ *(DONE|pulse)|stat::|ERROR|SUMMARY" || true
grep -q "ERROR: " fuzz.log && { echo "fuzz: FINDING, see $out/fuzz.log and $out/crash-*" >&2; exit 1; }
echo "fuzz: no findings in ${secs}s"
