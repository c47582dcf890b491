# Eval (issue 11): `monosem eval` against a float64 NumPy oracle of the whole spliced evaluation
# (1, 2 and 3 ranks; identity/zero SAEs exact); the SAELens export through a re-implementation
# of SAELens v6's loading rules; the metric arithmetic and the resumed forward (unit).
add_executable(eval_driver ${CMAKE_CURRENT_LIST_DIR}/eval_driver.c ${PROJECT_SOURCE_DIR}/apps/eval_run.c ${PROJECT_SOURCE_DIR}/apps/eval_write.c
  ${PROJECT_SOURCE_DIR}/apps/eval_splice.c ${PROJECT_SOURCE_DIR}/apps/eval_metrics.c ${PROJECT_SOURCE_DIR}/apps/job_saes.c
  ${PROJECT_SOURCE_DIR}/apps/app_util.c ${PROJECT_SOURCE_DIR}/apps/stage_lock.c
  ${PROJECT_SOURCE_DIR}/apps/model_fit.c)
target_include_directories(eval_driver PRIVATE ${PROJECT_SOURCE_DIR}/apps)
target_link_libraries(eval_driver PRIVATE msjob mssae msunits msmodel msio PkgConfig::CJSON)
ms_script_test(eval_ref LABELS "ref;mpi;e2e" DEPENDS tmpdir
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/eval_ref.py $<TARGET_FILE:eval_driver> ${CMAKE_CURRENT_BINARY_DIR}/tmp/eval_ref)
set_tests_properties(eval_ref PROPERTIES PROCESSORS 2)
add_executable(saelens_driver ${CMAKE_CURRENT_LIST_DIR}/saelens_driver.c)
target_link_libraries(saelens_driver PRIVATE mssae)
ms_script_test(eval_saelens_ref LABELS ref DEPENDS tmpdir
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/saelens_ref.py $<TARGET_FILE:saelens_driver> ${CMAKE_CURRENT_BINARY_DIR}/tmp/eval_saelens)
ms_unit_test(test_eval_units SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_eval_units.c ${PROJECT_SOURCE_DIR}/apps/eval_metrics.c
  LIBS msjob mssae msunits msmodel)
target_include_directories(test_eval_units PRIVATE ${PROJECT_SOURCE_DIR}/apps)
ms_script_test(eval_train_window LABELS "mpi;e2e" DEPENDS tmpdir COMMAND ${CMAKE_CURRENT_LIST_DIR}/train_window.sh)
set_tests_properties(eval_train_window PROPERTIES PROCESSORS 2)
