#!/bin/bash
# Example Slurm script: the pipeline on a cluster, one stage per job step, all from one job file.
# Each rank gets cores/ranks OpenBLAS threads (run.blas_threads overrides); only rank 0 prints.
# A stage that dies (node failure, time limit) resumes from its checkpoint when resubmitted.
#SBATCH --job-name=monosem
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=4
#SBATCH --time=24:00:00
#SBATCH --output=monosem-%j.log
set -euo pipefail
JOB=${JOB:-jobs/paper-a-sweep.yaml}
export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
export MONOSEM_PROGRESS=lines          # batch log: periodic plain progress lines

srun monosem tokenize "$JOB"
srun monosem train-model "$JOB"         # model A, then model B when the job has model_b.seed
srun monosem generate "$JOB"            # activations of each model
# the job's saes: list (the paper's A/0 ... A/5 sweep, B/1) trained in sequence; or one SAE
# per array task:  sbatch --array=0-6 ... and  srun monosem train "$JOB" --only ${NAMES[$SLURM_ARRAY_TASK_ID]}
srun monosem train "$JOB"
srun monosem compare "$JOB"             # feature splitting and universality
# or all of the above (skipping what is done, redoing what changed) in one step:
#   srun monosem run "$JOB"
