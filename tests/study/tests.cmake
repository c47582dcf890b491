# The study (issue 14): several SAEs and model B in one job file (config), the correlation
# and matching statistics against NumPy on 1 and 3 ranks (ref), and `monosem run` end to end
# with skip / redo decisions and summary.json (e2e).
ms_unit_test(test_study_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_study_config.c LIBS msjob)
# Correlation sums, best matches, decoder cosines and families vs NumPy on 1 and 3 ranks.
add_executable(study_corr_driver ${CMAKE_CURRENT_LIST_DIR}/corr_driver.c)
target_link_libraries(study_corr_driver PRIVATE msunits msio)
ms_script_test(study_corr_ref LABELS "ref;mpi" DEPENDS tmpdir
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/ref_corr.py $<TARGET_FILE:study_corr_driver>
          ${MPIEXEC_EXECUTABLE} "${MS_MPI_FLAGS_STR}" ${CMAKE_CURRENT_BINARY_DIR}/tmp/study_corr)
# monosem run: two SAE sizes + model B from nothing, then skip / redo / resume decisions.
ms_script_test(study_run_e2e LABELS "e2e;mpi" DEPENDS tmpdir COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_study.sh)
set_tests_properties(study_run_e2e PROPERTIES PROCESSORS 2)
