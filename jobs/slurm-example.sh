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
JOB=${JOB:-jobs/demo.yaml}
export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
export MONOSEM_PROGRESS=lines          # batch log: periodic plain progress lines

srun monosem tokenize "$JOB"
srun monosem train-model "$JOB"
srun monosem generate "$JOB"
# a dictionary-size sweep from the same activations (the paper's A/0 ... A/5 series)
for m in 512 4096 16384; do
  srun monosem train "$JOB" --sae.d_sae=$m --sae.out_dir=runs/sweep/sae-$m
done
