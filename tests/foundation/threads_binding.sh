#!/usr/bin/env bash
# Threads per rank follow the CPUs the launcher granted (sched_getaffinity), not the node's
# core count: mpirun -n 1 with Open MPI's default core binding -> 1 thread (and a line saying
# why); --bind-to none -> every CPU; two unbound ranks share them; run.blas_threads above the
# mask wins but prints exactly one warning line.
set -u
probe=${1:?usage: threads_binding.sh THREADS_PROBE}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
py=${MS_PYTHON:-/usr/bin/python3}
n=$("$py" -c 'import os; print(len(os.sched_getaffinity(0)))')
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
errf=$(mktemp); trap 'rm -f "$errf"' EXIT
# stdout (the probe's "rank ..." lines) and stderr (monosem's notes) apart: mpirun interleaves them
launch() { timeout 60 "$MS_MPIRUN" $MS_MPI_FLAGS "$@" 2>"$errf"; }
err() { cat "$errf"; }
field() { sed -n "s/^rank .* $1 \([0-9][0-9]*\).*/\1/p" <<<"$2" | head -1; }
echo "CPUs available to this test: $n"

out=$(launch -n 1 "$probe"); echo "$out"; err
if [ "$n" -ge 2 ]; then # Open MPI binds 1-2 ranks to one core each by default
  [ "$(field mask "$out")" = 1 ] || fail "mpirun -n 1 (default binding): expected a 1-CPU mask"
  [ "$(field threads "$out")" = 1 ] || fail "mpirun -n 1 (default binding): expected 1 thread"
  grep -q "^threads: 1 per rank: the launcher bound each rank to 1 of" "$errf" ||
    fail "no line says why only 1 thread runs"
  out=$(launch -n 1 "$probe" 2); echo "$out"; err
  [ "$(field threads "$out")" = 2 ] || fail "run.blas_threads 2 must win over the mask"
  [ "$(field openblas "$out")" = 2 ] || fail "OpenBLAS not set to the requested 2 threads"
  [ "$(grep -c '^warning: run.blas_threads 2 but this rank may run on 1 CPU' "$errf")" = 1 ] ||
    fail "expected exactly one warning line for 2 threads on 1 bound CPU"
fi
out=$(launch -n 1 --bind-to none "$probe"); echo "$out"; err
[ "$(field mask "$out")" = "$n" ] || fail "--bind-to none: expected a $n-CPU mask"
[ "$(field threads "$out")" = "$n" ] || fail "--bind-to none: expected $n threads"
[ "$(field openblas "$out")" = "$n" ] || fail "--bind-to none: OpenBLAS threads not $n"
grep -q "warning\|^threads:" "$errf" && fail "--bind-to none, 1 rank: nothing to warn about"
out=$(launch -n 1 --bind-to none "$probe" "$n"); echo "$out"; err
grep -q "warning" "$errf" && fail "run.blas_threads equal to the mask must not warn"
out=$(launch -n 2 --bind-to none "$probe"); echo "$out"; err
want=$((n / 2)); [ "$want" -ge 1 ] || want=1
[ "$(grep -c "sharers 2 .* threads $want " <<<"$out")" = 2 ] ||
  fail "two unbound ranks: expected each to see 2 sharers and take $want thread(s)"
[ "$fails" -eq 0 ] && echo "threads_binding: all checks passed"
exit $((fails > 0))
