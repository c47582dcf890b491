#!/usr/bin/env bash
# Each class of bad job file, run under mpirun -n 3: exit code 2 from the launch (so from every
# rank), the exact one-line message printed once, and no hang (timeout).
set -u
tmp="${MS_TEST_TMP:?}/bad_jobs"; mkdir -p "$tmp"; cd "$tmp" || exit 1
fail=0; pass=0
check() { # name, file contents (or NONE for a missing file), expected stderr line
  local name=$1 body=$2 want=$3 file="$tmp/$1.yaml"
  [ "$body" = NONE ] && rm -f "$file" || printf '%b' "$body" > "$file"
  local out rc
  out=$(timeout 60 "$MS_MPIRUN" -n 3 $MS_MPI_FLAGS "$MS_BIN/monosem" config "$file" 2>&1 >/dev/null); rc=$?
  local n; n=$(printf '%s\n' "$out" | grep -cF -- "$want")
  if [ "$rc" -ne 2 ] || [ "$n" -ne 1 ]; then
    echo "FAIL $name: exit $rc (want 2), message seen $n times (want 1)"; echo "  want: $want"; echo "  got:  $out"
    fail=$((fail+1))
  else pass=$((pass+1)); fi
}
check unknown_key   'sae:\n  d_sae: 8\n  d_saee: 3\n'   "$tmp/unknown_key.yaml:3:3: unknown key 'sae.d_saee' (did you mean 'sae.d_sae'?)"
check wrong_type    'sae:\n  d_sae: abc\n'           "$tmp/wrong_type.yaml:2:10: key 'sae.d_sae': expected a positive integer, got \"abc\""
check out_of_range  'sae:\n  lr: -0.5\n'             "$tmp/out_of_range.yaml:2:7: key 'sae.lr': expected a number in (0, 10], got \"-0.5\""
check duplicate     'run:\n  seed: 1\n  seed: 2\n'   "$tmp/duplicate.yaml:3:3: duplicate key 'run.seed' (first set at 2:3)"
check malformed     'sae:\n  d_sae: [1\n'            "$tmp/malformed.yaml:3:1: malformed YAML: did not find expected ',' or ']' while parsing a flow sequence"
check unreadable    NONE                              "$tmp/unreadable.yaml: cannot open: No such file or directory"
# missing required key: the tokenize stage needs corpus.paths
printf 'run:\n  name: x\n' > "$tmp/missing.yaml"
out=$(timeout 60 "$MS_MPIRUN" -n 3 $MS_MPI_FLAGS "$MS_BIN/monosem" tokenize "$tmp/missing.yaml" 2>&1 >/dev/null); rc=$?
want="$tmp/missing.yaml: missing required key 'corpus.paths' (files or globs)"
if [ "$rc" -ne 2 ] || [ "$(printf '%s\n' "$out" | grep -cF -- "$want")" -ne 1 ]; then
  echo "FAIL missing_required: exit $rc; got: $out"; fail=$((fail+1)); else pass=$((pass+1)); fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
