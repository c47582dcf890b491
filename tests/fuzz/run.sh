#!/bin/bash
# tests/fuzz/run.sh [SECONDS] [BUILD_DIR] [HARNESS...]: builds the libFuzzer harnesses with
# clang (libFuzzer + ASan + UBSan over the whole libraries: cmake -DMONOSEM_FUZZ=ON) and fuzzes
# each for SECONDS (default 120), starting from its committed seeds (seeds-<name>/, seeds/ for
# safetensors). Harnesses: safetensors config tokenizer_files bpe tokens checkpoint (default
# all). New interesting inputs go to BUILD_DIR/corpus-<name>, crashes to BUILD_DIR/crash-<name>-*.
# Prints the exec count per harness; exits 1 on any finding.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-120}
out=${2:-$root/build-fuzz}
shift $(( $# > 2 ? 2 : $# ))
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(safetensors config tokenizer_files bpe tokens checkpoint)
mkdir -p "$out"
command -v clang >/dev/null || { echo "clang not found (Debian: apt-get install clang)" >&2; exit 2; }
CC=clang cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMONOSEM_SANITIZE=ON -DMONOSEM_FUZZ=ON \
  -DMONOSEM_BUILD_BENCH=OFF > "$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; exit 2; }
cmake --build "$out" -j2 --target $(printf 'fuzz_%s ' "${harnesses[@]}") > "$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; exit 2; }
dict_safetensors='"dtype"\n"shape"\n"data_offsets"\n"__metadata__"\n"F32"\n"F16"\n"BF16"\n"F64"\n"I32"\n"U8"\n"BOOL"\n'
dict_config='"run:"\n"sae:"\n"corpus:"\n"model:"\n"train_model:"\n"resample:"\n"at:"\n"{"\n"}"\n"["\n"]"\n"&a"\n"*a"\n"!!str"\n"---"\n"null"\n"1e3"\n"1_000"\n'
dict_tokens='"\\"train\\""\n"\\"file\\""\n"\\"tokens\\""\n"\\"vocab_size\\""\n"\\"eot\\""\n"\\"tokenizer_sha256\\""\n"MSTOKENS"\n'
dict_checkpoint='"step"\n"data_position"\n"n_ranks"\n"fingerprint"\n"d_in"\n"d_sae"\n"d_vocab"\n"n_layers"\n"F32"\n'
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 OPENBLAS_NUM_THREADS=1
found=0
cd "$out"
for h in "${harnesses[@]}"; do
  seeds=$here/seeds-$h; [ "$h" = safetensors ] && seeds=$here/seeds
  mkdir -p "corpus-$h"
  dv=dict_$h; dargs=()
  if [ -n "${!dv:-}" ]; then printf "${!dv}" > "dict-$h"; dargs=(-dict="dict-$h"); fi
  "tests/fuzz_$h" -max_total_time="$secs" -max_len=8192 -print_final_stats=1 -artifact_prefix="crash-$h-" \
    "${dargs[@]}" "corpus-$h" "$seeds" > "fuzz-$h.log" 2>&1 || true
  execs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "fuzz-$h.log" | grep -o "[0-9]*$" || echo 0)
  if grep -q "ERROR: \|runtime error:\|==ERROR\|deadly signal" "fuzz-$h.log"; then
    echo "fuzz $h: FINDING after $execs execs, see $out/fuzz-$h.log and $out/crash-$h-*" >&2; found=1
  else
    echo "fuzz $h: no findings in ${secs}s ($execs execs, corpus $(ls "corpus-$h" | wc -l) inputs)"
  fi
done
exit $found
