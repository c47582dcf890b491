# Clusters (issue 15): stop signals on one rank -> checkpoint, exit 75, exact resume (fault).
foreach(stage train-model train generate)
  ms_script_test(signals_${stage} LABELS "fault;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/signals.sh ${stage})
  set_tests_properties(signals_${stage} PROPERTIES PROCESSORS 2)
endforeach()
