# jobs/slurm/lib.sh: what the monosem Slurm job scripts share (sourced, not submitted):
# threads per rank from the allocation, a launcher that binds each rank to its cores, a log a
# person can follow, and the wall-clock protocol. Scripts source it from $MONOSEM_HOME (default:
# the directory sbatch was called from, i.e. a clone of monosem).
#
# Wall-clock protocol: monosem's long stages (train-model, generate, train) catch SIGTERM,
# SIGINT and SIGUSR1, agree across ranks at the next step, write a checkpoint and exit 75.
# Slurm's `--signal=B:TERM@N` signals only this batch shell; ms_run forwards it to the ranks as
# SIGUSR1, because srun answers SIGTERM by killing the step and mpirun by killing the job, while
# both forward SIGUSR1 to every rank. (At the time limit itself Slurm sends SIGTERM to every
# task directly, which works too if KillWait leaves time for the checkpoint.) On exit code 75
# ms_requeue_or_exit calls `scontrol requeue`: Slurm's `--requeue` alone does not requeue a job
# that timed out. The rerun resumes from the checkpoint.

MONOSEM=${MONOSEM:-monosem}       # the monosem binary (a path, or on PATH)
MS_LAUNCHER=${MS_LAUNCHER:-srun}  # srun (PMIx) or mpirun
MS_EXIT_INTERRUPTED=75            # monosem: stopped by a signal after a checkpoint

ms_log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ) ${SLURM_JOB_ID:-nojob}${SLURM_ARRAY_TASK_ID:+[$SLURM_ARRAY_TASK_ID]}] $*"; }

# Threads per rank = the CPUs Slurm gave each task; printed with the allocation for the log.
ms_setup() {
  MS_THREADS=${SLURM_CPUS_PER_TASK:-1}
  export OMP_NUM_THREADS=$MS_THREADS OPENBLAS_NUM_THREADS=$MS_THREADS
  MS_NTASKS=${SLURM_NTASKS:-1}
  export MONOSEM_PROGRESS=${MONOSEM_PROGRESS:-lines} # a batch log: plain periodic progress lines
  ms_log "job ${SLURM_JOB_NAME:-?} on ${SLURM_JOB_NODELIST:-$(hostname)}: $MS_NTASKS rank(s) x $MS_THREADS" \
         "thread(s), restart ${SLURM_RESTART_COUNT:-0}, launcher $MS_LAUNCHER, $("$MONOSEM" --version 2>&1 | head -1)"
}

# The launch line for this allocation: each rank bound to its own SLURM_CPUS_PER_TASK cores.
# Debian's Open MPI has PMIx only: `srun --mpi=pmix` (pmi2 and a plain srun fail). Since Slurm
# 22.05 srun does not inherit --cpus-per-task from sbatch: it is passed explicitly.
ms_launch_cmd() {
  if [ "$MS_LAUNCHER" = srun ]; then
    # (sites with task/affinity or task/cgroup bind each task to its CPUs; MS_SRUN_CPU_BIND=cores
    # asks explicitly, and warns where the cluster has no binding plugin)
    echo srun --mpi=pmix --ntasks="$MS_NTASKS" --cpus-per-task="$MS_THREADS" ${MS_SRUN_CPU_BIND:+--cpu-bind=$MS_SRUN_CPU_BIND}
  else
    echo mpirun -n "$MS_NTASKS" --map-by "slot:PE=$MS_THREADS" --bind-to core ${MS_MPIRUN_FLAGS:-}
  fi
}

# ms_run STAGE JOB [--key=value ...]: one monosem stage, threads pinned to the allocation.
# Returns monosem's exit code; SIGTERM/SIGINT/SIGUSR1 to this shell reach the ranks as SIGUSR1.
ms_run() {
  local stage=$1; shift
  local cmd
  read -r -a cmd <<<"$(ms_launch_cmd)"
  cmd+=("$MONOSEM" "$stage" "$@" "--run.blas_threads=$MS_THREADS")
  ms_log "run: ${cmd[*]}"
  "${cmd[@]}" &
  local pid=$! rc
  trap 'ms_log "signal: asking monosem to checkpoint and stop"; kill -USR1 '"$pid"' 2>/dev/null' TERM INT USR1
  # wait returns early (> 128) when a trapped signal arrives: wait again for the real exit
  while :; do
    wait "$pid"; rc=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  trap - TERM INT USR1
  ms_log "$stage exited with code $rc"
  return "$rc"
}

# ms_requeue_or_exit RC: 0 -> exit 0; 75 -> requeue this job (it resumes from the checkpoint)
# and exit; anything else -> exit RC (a real failure: not requeued).
ms_requeue_or_exit() {
  local rc=$1
  if [ "$rc" -eq "$MS_EXIT_INTERRUPTED" ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    ms_log "checkpoint written; requeueing job $SLURM_JOB_ID to resume"
    trap '' TERM # scontrol requeue signals this shell once more
    scontrol requeue "$SLURM_JOB_ID" || { ms_log "scontrol requeue failed: resubmit by hand"; exit "$rc"; }
    exit 0
  fi
  [ "$rc" -eq 0 ] && ms_log "done"
  exit "$rc"
}

# ms_stage_dir DIR: creates the output directory on the parallel file system. On Lustre, stripe
# it first so the parallel HDF5 activations file spreads over all OSTs (large sequential
# hyperslab writes from every rank, then many readers in a sweep):
#   lfs setstripe -c -1 -S 16M DIR        (-c -1: all OSTs; 16 MiB stripes)
ms_stage_dir() {
  mkdir -p "$1"
  if command -v lfs >/dev/null 2>&1 && lfs getstripe -d "$1" >/dev/null 2>&1; then
    lfs setstripe -c "${MS_LUSTRE_STRIPES:--1}" -S "${MS_LUSTRE_STRIPE_SIZE:-16M}" "$1" 2>/dev/null &&
      ms_log "striped $1 over ${MS_LUSTRE_STRIPES:--1} OSTs"
  fi
  return 0
}
