#!/usr/bin/env bash
# The PBS job scripts (jobs/pbs/), as far as this machine allows: no PBS server exists in Debian
# 12, so (1) bash syntax, (2) their #PBS directives through a parser of PBS Pro's grammar (which
# must also reject a broken script), (3) each script RUN under mpiexec with the environment a
# PBS job has (PBS_NODEFILE, PBS_JOBID, PBS_O_WORKDIR, OMP_NUM_THREADS, PBS_ARRAY_INDEX) on a
# tiny job: the pipeline completes with the same model, activations and SAE as a direct run;
# a sweep subjob trains its size; the training script's walltime timer makes monosem checkpoint
# and exit 75, the script resubmits itself (a stand-in qsub records the call: the only part of
# PBS replaced), and running the resubmitted job resumes and ends bitwise identical.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/fixture.sh"
. "$here/../hook.sh"
py=${MS_PYTHON:-/usr/bin/python3}
tmp="${MS_TEST_TMP:?}/pbs"
rm -rf "$tmp"; mkdir -p "$tmp/bin"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# (1) syntax, (2) directives
for f in "$root"/jobs/pbs/*.pbs "$root"/jobs/pbs/lib.sh; do bash -n "$f" || fail "bash -n $f"; done
"$py" "$here/pbs_directives.py" "$root"/jobs/pbs/*.pbs || fail "PBS directives"
printf '#!/bin/bash\n#PBS -N 1bad\n#PBS -l select=1:ncpus=2:mpiprocs=4\n#PBS -l walltime=4h\n#PBS -J 3-1\n' >"$tmp/bad.pbs"
"$py" "$here/pbs_directives.py" "$tmp/bad.pbs" >"$tmp/bad.log" 2>&1 && fail "the directive parser accepted a broken script"
[ "$(grep -c FAIL "$tmp/bad.log")" -ge 4 ] || { cat "$tmp/bad.log"; fail "the parser missed problems in the broken script"; }

# (3) the scripts run as a PBS job would run them
make_tiny_job "$tmp/job" && make_tiny_job "$tmp/direct" || { echo "FAIL: fixture"; exit 1; }
timeout 300 "$MS_MPIRUN" -n 2 $MS_MPI_FLAGS "$MS_BIN/monosem" run "$tmp/direct/job.yaml" >"$tmp/direct.log" 2>&1
rc=$?; [ $rc = 0 ] || [ $rc = 3 ] || { cat "$tmp/direct.log"; fail "direct monosem run: exit $rc"; }
printf '%s\n%s\n' "$(hostname)" "$(hostname)" >"$tmp/nodefile"
# stand-in for PBS's qsub (no PBS server in Debian): records the resubmission
printf '#!/bin/sh\necho "$@" >>"%s/qsub.calls"\necho 43.stand-in\n' "$tmp" >"$tmp/bin/qsub"
chmod +x "$tmp/bin/qsub"
pbs_env=(PATH="$tmp/bin:$PATH" PBS_NODEFILE="$tmp/nodefile" PBS_JOBID=42.test PBS_JOBNAME=t PBS_O_WORKDIR="$tmp"
         OMP_NUM_THREADS=1 MONOSEM="$MS_BIN/monosem" MONOSEM_HOME="$root" MS_MPIRUN_FLAGS=--oversubscribe)
pbsrun() { local log=$1; shift; env "${pbs_env[@]}" "$@" >"$log" 2>&1; }

pbsrun "$tmp/pipeline.log" JOB="$tmp/job/job.yaml" timeout 300 bash "$root/jobs/pbs/pipeline.pbs" ||
  { cat "$tmp/pipeline.log"; fail "pipeline.pbs"; }
grep -q "run: mpiexec -n 2 --hostfile $tmp/nodefile --map-by slot:PE=1 --bind-to core" "$tmp/pipeline.log" ||
  fail "pipeline.pbs launch line"
grep -q "\] done$" "$tmp/pipeline.log" || fail "pipeline.pbs log does not end with done"
cmp -s "$tmp/direct/model/model.safetensors" "$tmp/job/model/model.safetensors" || fail "pipeline.pbs model differs"
"$py" "$here/../generate/ref_generate.py" same "$tmp/direct/acts.h5" "$tmp/job/acts.h5" >/dev/null ||
  fail "pipeline.pbs activations differ"
cmp -s "$tmp/direct/sae/saelens/sae_weights.safetensors" "$tmp/job/sae/saelens/sae_weights.safetensors" ||
  fail "pipeline.pbs SAE differs"

pbsrun "$tmp/sweep.log" JOB="$tmp/job/job.yaml" PBS_ARRAY_INDEX=1 MS_SIZES="32 48" MS_SWEEP_DIR="$tmp/sweep" \
  timeout 300 bash "$root/jobs/pbs/sweep.pbs" || { cat "$tmp/sweep.log"; fail "sweep.pbs"; }
"${MS_PYTHON:-/usr/bin/python3}" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["d_sae"] != 48)' \
  "$tmp/sweep/d_sae-48/saelens/cfg.json" 2>/dev/null || fail "sweep.pbs index 1: no d_sae 48 SAE"

# walltime 12 s, margin 2 s: the timer fires ~10 s in. Rank 0 stops itself at step 5
# (MONOSEM_TEST_HOOK) and is let go only once the timer has fired, so the run is mid-way when
# SIGUSR1 comes, however fast or loaded the machine (no pacing, no guessed duration)
rq=(JOB="$tmp/job/job.yaml" MS_OVERRIDES="--sae.out_dir=$tmp/sae-rq")
pbsrun "$tmp/rq1.log" "${rq[@]}" MONOSEM_TEST_HOOK="step:5:0:stop:$tmp/rq1.hook" MS_WALLTIME=00:00:12 MS_MARGIN=2 \
  timeout 300 bash "$root/jobs/pbs/train-requeue.pbs" &
bp=$!
if rpid=$(hook_wait "$tmp/rq1.hook" $bp "train's step 5 under train-requeue.pbs"); then
  for ((i = 0; i < 600; i++)); do grep -q "walltime - 2s: asking monosem" "$tmp/rq1.log" && break; sleep 0.05; done
  grep -q "walltime - 2s: asking monosem" "$tmp/rq1.log" || fail "the walltime timer did not fire within 30 s of step 5"
  wait_pending "$rpid" 60 "SIGUSR1 forwarded by mpiexec" || fail "rank 0 never got the timer's signal"
  hook_release_signalled "$tmp/rq1.hook"
else fail "train never reached step 5 under train-requeue.pbs"; fi
wait_bounded $bp 240 "train-requeue.pbs (first job)" || { cat "$tmp/rq1.log"; fail "train-requeue.pbs (first job)"; }
grep -v " steps (" "$tmp/rq1.log"
grep -q "walltime - 2s: asking monosem to checkpoint" "$tmp/rq1.log" || fail "the walltime timer did not fire"
grep -q "train exited with code 75" "$tmp/rq1.log" || fail "no exit 75 on the timer's signal"
grep -q -- "-v JOB=$tmp/job/job.yaml,MONOSEM=$MS_BIN/monosem,MS_OVERRIDES=--sae.out_dir=$tmp/sae-rq.* $root/jobs/pbs/train-requeue.pbs" \
  "$tmp/qsub.calls" 2>/dev/null || { cat "$tmp/qsub.calls"; fail "the script did not resubmit itself with its variables"; }
pbsrun "$tmp/rq2.log" "${rq[@]}" PBS_JOBID=43.test timeout 300 bash "$root/jobs/pbs/train-requeue.pbs" ||
  { cat "$tmp/rq2.log"; fail "train-requeue.pbs (resubmitted job)"; }
grep -q "train: resuming from .* at step 5 of 60" "$tmp/rq2.log" || fail "the resubmitted job did not resume"
cmp -s "$tmp/job/sae/saelens/sae_weights.safetensors" "$tmp/sae-rq/saelens/sae_weights.safetensors" ||
  fail "resubmitted+resumed SAE differs from the uninterrupted one"
[ "$fails" -eq 0 ] && echo "pbs: all checks passed"
exit $((fails > 0))
