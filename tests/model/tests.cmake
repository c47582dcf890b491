# Model tests: safetensors, kernels vs naive twins, hooks, save/load (unit); the C forward vs an
# independent NumPy forward incl. bad weight files (ref); the forward CLI writing HDF5 (e2e).
ms_unit_test(test_model SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_model.c LIBS msmodel)
set_tests_properties(test_model PROPERTIES FIXTURES_REQUIRED tmpdir)
add_executable(model_driver ${CMAKE_CURRENT_LIST_DIR}/model_driver.c)
target_link_libraries(model_driver PRIVATE msmodel)
ms_script_test(model_ref_forward LABELS ref
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/ref_forward.py $<TARGET_FILE:model_driver> ${CMAKE_CURRENT_BINARY_DIR}/tmp/model_ref
  DEPENDS tmpdir)
ms_script_test(model_forward_cli LABELS e2e mpi
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/forward_cli.py ${CMAKE_CURRENT_BINARY_DIR}/tmp/model_forward_cli
  DEPENDS tmpdir)
# The fuzz harness's regression corpus, replayed with the normal compiler (tests/fuzz/run.sh fuzzes).
add_executable(fuzz_safetensors_replay ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_safetensors.c ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.c)
target_link_libraries(fuzz_safetensors_replay PRIVATE msio)
file(GLOB MS_FUZZ_CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/seeds/*)
add_test(NAME fuzz_safetensors_replay COMMAND fuzz_safetensors_replay ${MS_FUZZ_CORPUS})
set_tests_properties(fuzz_safetensors_replay PROPERTIES LABELS unit TIMEOUT 120)
