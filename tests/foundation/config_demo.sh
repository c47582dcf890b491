#!/usr/bin/env bash
# `mpirun -n 3 monosem config JOB` (the demo, the paper sweep) prints the resolved config exactly once.
set -u
job=$1
out=$(timeout 60 "$MS_MPIRUN" -n 3 $MS_MPI_FLAGS "$MS_BIN/monosem" config "$job" 2>&1); rc=$?
n=$(printf '%s\n' "$out" | grep -c '^# monosem .* resolved config')
keys=$(printf '%s\n' "$out" | grep -c '^sae:')
if [ $rc -ne 0 ] || [ "$n" -ne 1 ] || [ "$keys" -ne 1 ]; then
  echo "FAIL: exit $rc, header printed $n times, the sae section printed $keys times"; printf '%s\n' "$out"; exit 1
fi
# the printed config is itself a valid job whose resolved form is identical
printf '%s\n' "$out" | grep -v '^#' > "${MS_TEST_TMP:?}/resolved-$(basename "$job")"
again=$("$MS_BIN/monosem" config "$MS_TEST_TMP/resolved-$(basename "$job")" | grep -v '^#')
if [ "$again" != "$(printf '%s\n' "$out" | grep -v '^#')" ]; then echo "FAIL: resolved config does not round-trip"; exit 1; fi
echo "1 passed, 0 failed"
