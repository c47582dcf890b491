# Shared by the robustness tests (robust.sh, round3.sh; sourced after T, BIN, MPIRUN and MPIFLAGS
# are set): pass/fail counting and bounded monosem runs.
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# ms SECS NP STAGE ARGS...: monosem under mpirun, output in $T/last.log, bounded in time
ms() {
    local secs=$1 np=$2; shift 2
    timeout "$secs" "$MPIRUN" -n "$np" "${MPIFLAGS[@]}" "$BIN" "$@" > "$T/last.log" 2>&1
}
# expect_fail NAME WANT SECS NP STAGE ARGS...: non-zero exit (not a timeout), WANT printed once
expect_fail() {
    local name=$1 want=$2; shift 2
    ms "$@"; local rc=$?
    local n; n=$(grep -cF -- "$want" "$T/last.log")
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$n" -eq 1 ]; then ok "$name (exit $rc): $(grep -F -- "$want" "$T/last.log")"
    else bad "$name: exit $rc (124 = hang), message seen $n times; want '$want'; got: $(tail -3 "$T/last.log")"; fi
}
