#!/usr/bin/env bash
# MS_INVARIANT reports rank:file:line and ends every rank with exit 70, no hang: rank 1 trips it
# while rank 0 waits in a barrier; and the same without MPI initialised.
set -u
probe=${1:?usage: invariant.sh INVARIANT_PROBE}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
errf=$(mktemp); trap 'rm -f "$errf"' EXIT

timeout 60 "$MS_MPIRUN" $MS_MPI_FLAGS -n 2 "$probe" 2>"$errf"; rc=$?
cat "$errf"
[ "$rc" = 124 ] && fail "2 ranks: hang (rank 0 still waiting after 60 s)"
[ "$rc" = 70 ] || fail "2 ranks: exit $rc, expected 70"
grep -q '^monosem: rank 1: .*invariant_probe\.c:[0-9]*: invariant failed: comm.rank != 1' "$errf" ||
  fail "2 ranks: no 'rank 1: file:line: invariant failed' line"

timeout 60 "$probe" nompi 2>"$errf"; rc=$?
cat "$errf"
[ "$rc" = 70 ] || fail "no MPI: exit $rc, expected 70"
grep -q '^monosem: rank -1: .*invariant_probe\.c:[0-9]*: invariant failed: argc == 1' "$errf" ||
  fail "no MPI: no 'file:line: invariant failed' line"
[ "$fails" = 0 ] && echo "invariant: ok"
exit $((fails > 0))
