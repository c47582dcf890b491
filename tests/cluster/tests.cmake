# Clusters (issue 15): stop signals on one rank -> checkpoint, exit 75, exact resume (fault).
ms_unit_test(test_signals SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_signals.c LIBS msio LABELS fault)
set_tests_properties(test_signals PROPERTIES FIXTURES_REQUIRED tmpdir)
# The test hooks that every fault test stands on (MONOSEM_TEST_HOOK): fail, kill, stop/release.
ms_unit_test(test_testhook SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_testhook.c LIBS msio LABELS fault)
set_tests_properties(test_testhook PROPERTIES FIXTURES_REQUIRED tmpdir)
foreach(stage train-model train generate analyze eval compare run)
  ms_script_test(signals_${stage} LABELS "fault;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/signals.sh ${stage})
  set_tests_properties(signals_${stage} PROPERTIES PROCESSORS 2)
endforeach()
# The Slurm job scripts under a real one-node Slurm (scripts/start-slurm); skipped (77) with the
# reason when Slurm cannot start. About 1.5 minutes, mostly waiting for a real 1-minute limit.
ms_script_test(slurm_jobs LABELS "slurm" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/slurm.sh)
set_tests_properties(slurm_jobs PROPERTIES PROCESSORS 2 SKIP_RETURN_CODE 77 TIMEOUT 600)
# The PBS job scripts: syntax, #PBS directive grammar, and each script run under mpiexec with a
# PBS job's environment (no PBS server exists in Debian 12).
ms_script_test(pbs_jobs LABELS "e2e;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pbs.sh)
set_tests_properties(pbs_jobs PROPERTIES PROCESSORS 2)
