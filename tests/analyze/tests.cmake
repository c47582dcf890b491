# monosem analyze: per-unit bounded sets (unit), and the stage end to end against a NumPy oracle
# on 1/2/3 ranks, planted features, bad inputs (mpi, e2e, ref).
ms_unit_test(test_analysis SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_analysis.c
  ${PROJECT_SOURCE_DIR}/apps/analyze_spill.c LIBS msunits msio)
target_include_directories(test_analysis PRIVATE ${PROJECT_SOURCE_DIR}/apps)
ms_script_test(analyze_e2e LABELS "mpi;e2e;ref" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/analyze.sh)
