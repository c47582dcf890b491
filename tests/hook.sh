# Shell side of the test hooks (MONOSEM_TEST_HOOK, io.h "test hooks"), sourced by the fault,
# signal and resume tests: wait, bounded, for a rank to report a point and stop there.

# hook_wait FILE MPID WHAT [SECS]: waits until a rank has written its hook report FILE and is
# stopped (SIGSTOP) at the point, then prints its pid. Fails (returns 1, a message on stderr)
# if mpirun MPID exits first or SECS (default 300) pass: every wait says what it awaited.
hook_wait() {
  local file=$1 mp=$2 what=$3 secs=${4:-300} pid="" i state
  for ((i = 0; i < secs * 20; i++)); do
    [ -s "$file" ] && break
    if ! kill -0 "$mp" 2>/dev/null; then
      echo "hook_wait: the run (mpirun $mp) ended before $what (no $file)" >&2; return 1
    fi
    sleep 0.05
  done
  [ -s "$file" ] || { echo "hook_wait: $what not reached within $secs s (no $file)" >&2; return 1; }
  read -r pid _ < "$file"
  for ((i = 0; i < 1200; i++)); do # the report is written just before the rank stops itself
    state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null)
    [ "$state" = T ] && { echo "$pid"; return 0; }
    [ -z "$state" ] && { echo "hook_wait: pid $pid gone after reporting $what" >&2; return 1; }
    sleep 0.05
  done
  echo "hook_wait: pid $pid reported $what but is not stopped after 60 s (state $state)" >&2
  return 1
}

# descendants PID: PID and every process below it, parents first
descendants() {
  local c
  echo "$1"
  for c in $(pgrep -P "$1" 2>/dev/null); do descendants "$c"; done
}

# hang_report PID: what a hung run's processes are doing (state, signals, each thread's wait
# channel, and backtraces when gdb may attach), so a timeout in CI can be diagnosed afterwards
hang_report() {
  local p t
  echo "hang_report: processes of the hung run (pid $1):" >&2
  for p in $(descendants "$1"); do
    [ -r "/proc/$p/status" ] || continue
    echo "-- pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-160)" >&2
    grep -E '^(State|SigPnd|ShdPnd|SigBlk|SigCgt):' "/proc/$p/status" 2>/dev/null | tr '\n' ' ' >&2; echo >&2
    for t in /proc/$p/task/*; do
      echo "   task ${t##*/}: state $(cut -d' ' -f3 "$t/stat" 2>/dev/null) wchan $(cat "$t/wchan" 2>/dev/null)" >&2
    done
    if command -v gdb >/dev/null 2>&1; then
      timeout 60 gdb -p "$p" -batch -nx -ex 'thread apply all bt 20' 2>&1 | grep -E '^(#|Thread)' | head -80 >&2
    fi
  done
}

# wait_bounded PID SECS WHAT: waits for a background job; after SECS reports what its processes
# are doing (hang_report), kills them and fails naming WHAT. Returns the job's exit code
# otherwise. Keep SECS below any `timeout` wrapped around the job, so this report runs first.
wait_bounded() {
  local p=$1 secs=$2 what=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$p" 2>/dev/null || { wait "$p"; return $?; }
    sleep 0.1
  done
  echo "wait_bounded: $what still running after $secs s; killed" >&2
  hang_report "$p"
  for i in $(descendants "$p"); do kill -9 "$i" 2>/dev/null; done
  wait "$p" 2>/dev/null
  return 124
}

# wait_pending PID SECS WHAT: waits until a stopped rank has a stop signal (SIGTERM, SIGINT or
# SIGUSR1) pending, i.e. the signal a launcher or scheduler forwards has reached it; fails
# naming WHAT after SECS. Lets a test resume the rank only once the signal is certain to count
# at the point where it stopped.
wait_pending() {
  local pid=$1 secs=$2 what=$3 i m
  for ((i = 0; i < secs * 20; i++)); do
    m=0
    for f in $(sed -n 's/^\(SigPnd\|ShdPnd\):[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null); do m=$((m | 16#$f)); done
    (( m & ((1 << 14) | (1 << 1) | (1 << 9)) )) && return 0
    sleep 0.05
  done
  echo "wait_pending: no stop signal reached pid $pid within $secs s ($what)" >&2
  return 1
}

# hook_release_signalled FILE: lets the rank stopped at a hook go on once a stop signal is known
# to be pending on it (sent by the test, or seen by wait_pending): announces it in the report, then
# SIGCONT. The rank waits for its handler to run, whichever of its threads takes the signal, so
# the signal counts at the hook's point.
hook_release_signalled() {
  local pid
  read -r pid _ < "$1" || return 1
  echo signal >> "$1"
  kill -CONT "$pid"
}

# hook_release FILE: lets the rank stopped at a hook go on (removes its report, then SIGCONT)
hook_release() {
  local pid
  read -r pid _ < "$1" || return 1
  rm -f "$1"
  kill -CONT "$pid"
}
