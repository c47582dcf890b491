# Sourced by the scripts: mpirun flags for this machine (root needs consent; more ranks than
# cores need --oversubscribe) and Open MPI settings that work inside containers.
MS_MPIRUN_FLAGS="--oversubscribe"
[ "$(id -u)" -eq 0 ] && MS_MPIRUN_FLAGS="$MS_MPIRUN_FLAGS --allow-run-as-root"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
MS_JOBS=$(nproc 2>/dev/null || echo 2)
