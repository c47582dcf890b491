#!/usr/bin/env bash
# bench/bench_analyze.sh: `monosem analyze` (both passes, every SAE of the job and the neurons)
# against `monosem generate` on the same model, ranks and machine, in one run. Uses a job whose
# model, token shards and SAE exist (default: the demo's, after scripts/demo); outputs go to a
# scratch directory, never into the job's directories.
# usage: bench/bench_analyze.sh [JOB] [NP] [--key=value ...]   (defaults jobs/demo.yaml, 2)
set -eu
job=${1:-jobs/demo.yaml}; np=${2:-2}; shift $(( $# > 2 ? 2 : $# )) || true
bin=${MS_BIN:-build/apps}
tmp=${BENCH_DIR:-/tmp/monosem_bench_analyze}
rm -rf "$tmp"; mkdir -p "$tmp"
flags=(--oversubscribe); [ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
tokens=${BENCH_TOKENS:-1000000}
# the stages' run records go to scratch run directories whose entries link to the job's outputs
# (tokens, models, SAEs), so every path the job derives from run.out_dir still resolves
jout=$("$bin/monosem" config "$job" | awk '$1 == "out_dir:" {print $2; exit}')
for r in gen an; do
  mkdir -p "$tmp/$r"
  for e in "$jout"/*; do [ -e "$e" ] && ln -s "$(readlink -f "$e")" "$tmp/$r/$(basename "$e")"; done
done
rm -f "$tmp/gen/activations.h5" "$tmp"/*/run*.yaml
# generate over the same number of tokens, every position (what analyze sees), written to scratch
mpirun -n "$np" "${flags[@]}" "$bin/monosem" generate "$job" --run.out_dir="$tmp/gen" \
  --generate.out="$tmp/gen/activations.h5" --generate.tokens="$tokens" --generate.sample_per_context=128 \
  --corpus.paths=[] "$@" > "$tmp/generate.log" 2>&1 || { cat "$tmp/generate.log"; exit 1; }
mpirun -n "$np" "${flags[@]}" "$bin/monosem" analyze "$job" --run.out_dir="$tmp/an" \
  --analyze.out_dir="$tmp/an/out" --analyze.tokens="$tokens" "$@" > "$tmp/analyze.log" 2>&1 || { cat "$tmp/analyze.log"; exit 1; }
g=$(awk '/generate.tokens_per_s/ {gsub(/"/,"",$2); print $2}' "$tmp/gen/run-generate.yaml")
a=$(awk '/analyze.tokens_per_s/ {gsub(/"/,"",$2); print $2}' "$tmp/an/run-analyze.yaml")
# process CPU seconds (average over ranks) of each stage: on a shared machine the wall-clock
# rates follow the load, the CPU cost per token much less
cpu() { awk '/^  cpu:/ {f=1} f && /avg:/ {print $2; exit}' "$1"; }
gc=$(cpu "$tmp/gen/run-generate.yaml"); ac=$(cpu "$tmp/an/run-analyze.yaml")
# the encoder-GEMM limit: every SAE's encoder (2·d·d_sae FLOP per token) at the sgemm rate all
# ranks reach together, measured now on the encoder's shape; units from analyze's log line
# "units: A0 (512), A1 (2048), neurons (512)" (the last entry is the neurons: d, no encoder)
units=$(grep -o 'units: .*' "$tmp/analyze.log" | head -1)
d=$(echo "$units" | grep -o '([0-9]*)' | tail -1 | tr -d '()')
usae=$(echo "$units" | grep -o '([0-9]*)' | tr -d '()' | head -n -1 | awk '{s += $1} END {print s + 0}')
lim=0
if [ "$usae" -gt 0 ]; then
  sg=$(mpirun -n "$np" "${flags[@]}" "${MS_BENCH_BIN:-$(dirname "$bin")/bench}/bench_sgemm" --m 4096 --n "$usae" --k "$d" | tee "$tmp/sgemm.log" \
       | grep -o '[0-9.]* GFLOP/s in all' | awk '{print $1}')
  cat "$tmp/sgemm.log"
  lim=$(awk -v g="$sg" -v d="$d" -v u="$usae" 'BEGIN {printf "%.0f", g * 1e9 / (2 * d * u)}')
fi
grep -E "tokens in|tokens/s" "$tmp/analyze.log" | tail -1
awk -v g="$g" -v a="$a" -v np="$np" -v gc="$gc" -v ac="$ac" -v n="$tokens" -v lim="$lim" -v usae="$usae" -v d="$d" 'BEGIN {
  printf "analyze %d rank(s): %.0f tokens/s; generate on the same model and ranks: %.0f tokens/s; ratio %.2f (goal >= 0.4)\n", np, a, g, a / g
  if (lim > 0) printf "encoder-GEMM limit (SAE units %d on d %d at the sgemm rate above): %.0f tokens/s; analyze at %.2f of it (goal >= 0.8)\n", usae, d, lim, a / lim
  printf "CPU cost: analyze %.1f us/token, generate %.1f us/token (CPU s x ranks / tokens); ratio %.2f\n", ac * np / n * 1e6, gc * np / n * 1e6, gc / ac }'
