# jobs/pbs/lib.sh: what the monosem PBS Pro / Torque job scripts share (sourced, not submitted).
# NOT RUN UNDER A REAL PBS: Debian 12 packages no PBS server (no Torque, OpenPBS or PBS Pro), so
# these scripts are checked by the test suite only as far as this machine allows: bash syntax,
# a parser of their #PBS directives, and a run of each script under mpiexec with the
# environment PBS would set (PBS_NODEFILE, PBS_JOBID, ...). See tests/cluster/pbs.sh.
#
# PBS scripts take no arguments: qsub -v JOB=job.yaml,MS_OVERRIDES="--sae.lr=1e-3 ..."
# Wall-clock protocol: PBS sends SIGTERM at the walltime and SIGKILL kill_delay seconds later,
# with no earlier warning (Slurm's --signal has no PBS equivalent), so ms_run arms a timer that
# sends SIGUSR1 to the ranks MS_MARGIN seconds (default 300) before the walltime: monosem's long
# stages checkpoint at the next step and exit 75, and ms_resubmit_or_exit submits the script
# again (qrerun needs operator rights on most sites) to resume from the checkpoint.

MONOSEM=${MONOSEM:-monosem}
MS_EXIT_INTERRUPTED=75
MS_MARGIN=${MS_MARGIN:-300}

ms_log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ) ${PBS_JOBID:-nojob}] $*"; }

# Ranks = lines of PBS_NODEFILE (one per mpiprocs); threads per rank = OMP_NUM_THREADS, which
# PBS Pro sets from ompthreads (or ncpus/mpiprocs); Torque users set it in -v.
ms_setup() {
  cd "${PBS_O_WORKDIR:-.}" || exit 1
  MS_NTASKS=$(wc -l <"${PBS_NODEFILE:?PBS_NODEFILE is not set: not inside a PBS job}")
  MS_THREADS=${OMP_NUM_THREADS:-${NCPUS:-1}}
  export MONOSEM_PROGRESS=${MONOSEM_PROGRESS:-lines} # a batch log: plain periodic progress lines
  export OMP_NUM_THREADS=$MS_THREADS OPENBLAS_NUM_THREADS=$MS_THREADS
  ms_log "job ${PBS_JOBNAME:-?} on $(sort -u "$PBS_NODEFILE" | paste -sd, -): $MS_NTASKS rank(s) x" \
         "$MS_THREADS thread(s), $("$MONOSEM" --version 2>&1 | head -1)"
}

# Open MPI's mpiexec over the PBS node file, each rank bound to its MS_THREADS cores.
ms_launch_cmd() {
  echo mpiexec -n "$MS_NTASKS" --hostfile "$PBS_NODEFILE" --map-by "slot:PE=$MS_THREADS" --bind-to core \
    ${MS_MPIRUN_FLAGS:-}
}

# Seconds of walltime this job has: MS_WALLTIME, else Resource_List.walltime from qstat.
ms_walltime_s() {
  local w=${MS_WALLTIME:-}
  [ -z "$w" ] && command -v qstat >/dev/null 2>&1 &&
    w=$(qstat -f "$PBS_JOBID" 2>/dev/null | sed -n 's/.*Resource_List.walltime = //p' | head -1)
  [ -z "$w" ] && return 1
  IFS=: read -r -a p <<<"$w"
  local s=0 x; for x in "${p[@]}"; do s=$((s * 60 + 10#$x)); done
  echo "$s"
}

# ms_run STAGE JOB [--key=value ...]: one monosem stage; SIGUSR1 reaches the ranks MS_MARGIN s
# before the walltime (and whenever this shell gets SIGTERM/SIGINT/SIGUSR1).
ms_run() {
  local stage=$1; shift
  local cmd wall timer=""
  read -r -a cmd <<<"$(ms_launch_cmd)"
  cmd+=("$MONOSEM" "$stage" "$@" "--run.blas_threads=$MS_THREADS")
  ms_log "run: ${cmd[*]}"
  "${cmd[@]}" &
  local pid=$! rc
  trap 'ms_log "signal: asking monosem to checkpoint and stop"; kill -USR1 '"$pid"' 2>/dev/null' TERM INT USR1
  if wall=$(ms_walltime_s) && [ "$wall" -gt "$MS_MARGIN" ]; then
    ( sleep $((wall - MS_MARGIN)) && ms_log "walltime - ${MS_MARGIN}s: asking monosem to checkpoint and stop" &&
      kill -USR1 "$pid" 2>/dev/null ) &
    timer=$!
  fi
  while :; do
    wait "$pid"; rc=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  trap - TERM INT USR1
  if [ -n "$timer" ]; then pkill -P "$timer" sleep 2>/dev/null; kill "$timer" 2>/dev/null; fi
  ms_log "$stage exited with code $rc"
  return "$rc"
}

# ms_resubmit_or_exit RC SCRIPT: 75 -> submit SCRIPT again with the same variables (the new job
# resumes from the checkpoint); 0 -> done; anything else -> exit RC.
ms_resubmit_or_exit() {
  local rc=$1 script=$2
  if [ "$rc" -eq "$MS_EXIT_INTERRUPTED" ]; then
    # the variables this job was given (values must not contain commas: qsub -v splits on them)
    local vars="JOB=$JOB,MONOSEM=$MONOSEM" v
    for v in MS_OVERRIDES MS_STAGE MS_STAGE_DIR MONOSEM_HOME MS_MARGIN; do
      [ -n "${!v:-}" ] && vars+=",$v=${!v}"
    done
    ms_log "checkpoint written; submitting $script again to resume: qsub -v $vars $script"
    qsub -v "$vars" "$script" || { ms_log "qsub failed: resubmit $script by hand"; exit "$rc"; }
    exit 0
  fi
  [ "$rc" -eq 0 ] && ms_log "done"
  exit "$rc"
}

# ms_stage_dir DIR: the output directory on the parallel file system; on Lustre striped over all
# OSTs for the parallel HDF5 activations file:  lfs setstripe -c -1 -S 16M DIR
ms_stage_dir() {
  mkdir -p "$1"
  if command -v lfs >/dev/null 2>&1 && lfs getstripe -d "$1" >/dev/null 2>&1; then
    lfs setstripe -c "${MS_LUSTRE_STRIPES:--1}" -S "${MS_LUSTRE_STRIPE_SIZE:-16M}" "$1" 2>/dev/null &&
      ms_log "striped $1 over ${MS_LUSTRE_STRIPES:--1} OSTs"
  fi
  return 0
}
