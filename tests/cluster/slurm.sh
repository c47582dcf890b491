#!/usr/bin/env bash
# The Slurm job scripts (jobs/slurm/) under a REAL one-node Slurm on localhost (scripts/start-slurm:
# munged, slurmctld, slurmd as daemons in a private directory, stopped by pid at the end):
#  - pipeline.sbatch (srun --mpi=pmix, `monosem run`) on a tiny job: completes, outputs bitwise
#    equal to a direct `mpirun monosem run` of the same job;
#  - sweep.sbatch as a 2-task job array (launcher mpirun) over the pipeline's activations file;
#  - train-requeue.sbatch with a 1-minute limit and --signal=B:TERM@15: Slurm's own time-limit
#    signal makes monosem checkpoint and exit 75, the script requeues the job, the rerun resumes
#    and ends bitwise identical to the uninterrupted pipeline's SAE.
# Skips (exit 77) with the reason when Slurm cannot start here (not root, packages missing).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/fixture.sh"
. "$here/../hook.sh"
py=${MS_PYTHON:-/usr/bin/python3}
tmp="${MS_TEST_TMP:?}/slurm"
rm -rf "$tmp"; mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

if ! out=$("$root/scripts/start-slurm" "$tmp/slurm" 2>&1); then
  echo "SKIP: Slurm cannot start on this machine: $out"
  "$root/scripts/start-slurm" --stop "$tmp/slurm" >/dev/null 2>&1
  exit 77
fi
eval "$out"
trap '"$root/scripts/start-slurm" --stop "$tmp/slurm"' EXIT
echo "slurm up ($SLURM_CONF) after $(elapsed)"; sinfo
export PATH=$PATH:/usr/sbin
# what every job needs: the binary, the scripts' library, a log per job
common="ALL,MONOSEM=$MS_BIN/monosem,MONOSEM_HOME=$root,MS_MPIRUN_FLAGS=--oversubscribe"
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
logs() { for f in "$@"; do echo "---- $f"; cat "$f"; done; }

# ---- the same tiny job twice: through Slurm, and directly with mpirun
make_tiny_job "$tmp/job" && make_tiny_job "$tmp/direct" || { echo "FAIL: fixture"; exit 1; }
timeout 300 "$MS_MPIRUN" -n 2 $MS_MPI_FLAGS "$MS_BIN/monosem" run "$tmp/direct/job.yaml" >"$tmp/direct.log" 2>&1
rc=$?; [ $rc = 0 ] || [ $rc = 3 ] || { cat "$tmp/direct.log"; fail "direct monosem run: exit $rc"; }

# ---- 1. the pipeline
timeout 300 sbatch --wait --export="$common" -o "$tmp/pipeline.out" "$root/jobs/slurm/pipeline.sbatch" \
  "$tmp/job/job.yaml" >"$tmp/sbatch1.log" 2>&1 || { logs "$tmp/sbatch1.log" "$tmp/pipeline.out"; fail "pipeline job failed"; }
echo "pipeline job done after $(elapsed)"
grep -q "run: srun --mpi=pmix --ntasks=2 --cpus-per-task=1 .*monosem run" "$tmp/pipeline.out" ||
  fail "pipeline did not launch with srun --mpi=pmix and --cpus-per-task"
grep -q "\] done$" "$tmp/pipeline.out" || fail "pipeline log does not end with done"
cmp -s "$tmp/direct/model/model.safetensors" "$tmp/job/model/model.safetensors" ||
  fail "model from the Slurm job differs from the direct run"
"$py" "$here/../generate/ref_generate.py" same "$tmp/direct/acts.h5" "$tmp/job/acts.h5" >/dev/null ||
  fail "activations from the Slurm job differ from the direct run"
cmp -s "$tmp/direct/sae/saelens/sae_weights.safetensors" "$tmp/job/sae/saelens/sae_weights.safetensors" ||
  fail "SAE from the Slurm job differs from the direct run"

# ---- 2. a 2-member dictionary sweep (job array) over the same activations, launched with mpirun
timeout 300 sbatch --wait --array=0-1 --export="$common,MS_LAUNCHER=mpirun,MS_SIZES=32 48,MS_SWEEP_DIR=$tmp/sweep" \
  -o "$tmp/sweep-%a.out" "$root/jobs/slurm/sweep.sbatch" "$tmp/job/job.yaml" >"$tmp/sbatch2.log" 2>&1 ||
  { logs "$tmp/sbatch2.log" "$tmp"/sweep-*.out; fail "sweep array failed"; }
echo "sweep array done after $(elapsed)"
for i in 0 1; do
  d=$([ $i = 0 ] && echo 32 || echo 48)
  "${MS_PYTHON:-/usr/bin/python3}" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["d_sae"] != int(sys.argv[2]))' \
    "$tmp/sweep/d_sae-$d/saelens/cfg.json" "$d" 2>/dev/null ||
    { logs "$tmp/sweep-$i.out"; fail "sweep member $i: no SAE with d_sae $d"; }
  grep -q "run: mpirun -n 2 --map-by slot:PE=1 --bind-to core" "$tmp/sweep-$i.out" || fail "sweep member $i: launch line"
done

# ---- 3. a self-requeueing training job under a real 1-minute limit: rank 0 stops itself at step 5
#      (MONOSEM_TEST_HOOK) and is let go once Slurm's time-limit signal has reached the batch
#      script, so the run is mid-way when the signal comes (the rerun resumes past step 5: no stop)
hook="$tmp/requeue.hook"
jid=$(sbatch --parsable --time=1 --signal=B:TERM@15 \
  --export="$common,MS_STAGE=train,MONOSEM_TEST_HOOK=step:5:0:stop:$hook" -o "$tmp/requeue.out" \
  "$root/jobs/slurm/train-requeue.sbatch" "$tmp/job/job.yaml" "--sae.out_dir=$tmp/sae-rq")
echo "requeue job $jid submitted"
state="" restarted=0 continued=0
for i in $(seq 1 900); do
  state=$(job_state "$jid")
  # Slurm may SIGCONT the ranks before its signal arrives: the hook stops rank 0 again until the
  # signal is caught, so sending SIGCONT here (repeatedly) is harmless
  if [ $continued = 0 ] && [ -s "$hook" ] && grep -q "signal: asking monosem to checkpoint" "$tmp/requeue.out" 2>/dev/null; then
    read -r rpid _ < "$hook"
    kill -CONT "$rpid" 2>/dev/null || { continued=1; echo "time-limit signal reached the batch script after $(elapsed); rank 0 gone from step 5"; }
  fi
  if [ $restarted = 0 ] && [ "$(job_field "$jid" Restarts)" -ge 1 ] 2>/dev/null; then
    restarted=1
    echo "requeued after $(elapsed); lifting the time limit so the rerun is not signalled again"
    scontrol update JobId="$jid" TimeLimit=10
  fi
  case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
  sleep 0.2
done
echo "requeue job $jid: $state after $(elapsed)"
grep -v " steps (" "$tmp/requeue.out"
[ "$state" = COMPLETED ] || fail "requeue job ended $state"
[ $restarted = 1 ] || fail "the job was never requeued (no time-limit signal before it finished?)"
grep -q "signal: asking monosem to checkpoint" "$tmp/requeue.out" || fail "the batch script never got the time-limit signal"
grep -q "train: SIGUSR1: stopped at step 5 of 60" "$tmp/requeue.out" || fail "monosem did not checkpoint on the signal"
grep -q "train exited with code 75" "$tmp/requeue.out" || fail "no exit code 75"
grep -q "requeueing job $jid" "$tmp/requeue.out" || fail "the script did not requeue"
grep -q "restart 1," "$tmp/requeue.out" || fail "no restarted run in the log"
grep -q "train: resuming from .* at step [1-9][0-9]* of 60" "$tmp/requeue.out" || fail "the rerun did not resume"
cmp -s "$tmp/job/sae/saelens/sae_weights.safetensors" "$tmp/sae-rq/saelens/sae_weights.safetensors" ||
  fail "requeued+resumed SAE differs from the uninterrupted one"
strip() { sed 's/"tokens_per_s": [0-9.]*, //' "$1"; }
[ "$(strip "$tmp/job/sae/metrics.jsonl")" = "$(strip "$tmp/sae-rq/metrics.jsonl")" ] ||
  fail "requeued+resumed metrics differ from the uninterrupted run"
echo "slurm test took $(elapsed)"
[ "$fails" -eq 0 ] && echo "slurm: all checks passed"
exit $((fails > 0))
