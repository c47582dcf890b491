# Sourced by the scripts: mpirun flags for this machine (root needs consent; more ranks than
# cores need --oversubscribe) and Open MPI settings that work inside containers.
MS_MPIRUN_FLAGS="--oversubscribe"
[ "$(id -u)" -eq 0 ] && MS_MPIRUN_FLAGS="$MS_MPIRUN_FLAGS --allow-run-as-root"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
MS_JOBS=$(nproc 2>/dev/null || echo 2)
# ms_bind_flags N: mpirun binding for N ranks here. Each rank gets its own cores/N cores, and
# monosem sizes its threads from that binding (Open MPI's default binds 1-2 ranks to ONE core
# each: `mpirun -n 1` would run one thread on a 2-core machine). More ranks than cores: no
# binding (oversubscribed; ranks share the CPUs and take 1 thread each).
ms_bind_flags() {
  local pe=$(( MS_JOBS / ${1:?ranks} ))
  if [ "$pe" -ge 1 ]; then echo "--map-by slot:PE=$pe --bind-to core"; else echo "--bind-to none"; fi
}
