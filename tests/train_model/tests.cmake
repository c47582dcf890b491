# Model trainer: backward (finite differences, BLAS vs naive, NumPy reference), AdamW,
# checkpoints, data-parallel training (ranks agree, 1 vs 2 ranks, kill -9 / resume identity).
ms_unit_test(test_train_backward SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_backward.c LIBS msmodel m)
set_tests_properties(test_train_backward PROPERTIES FIXTURES_REQUIRED tmpdir)
# NumPy reference of every parameter gradient (independent float64 backprop in ref_grads.py).
add_executable(train_model_dump_grads ${CMAKE_CURRENT_LIST_DIR}/dump_grads.c)
target_link_libraries(train_model_dump_grads PRIVATE msmodel)
ms_script_test(train_model_ref_grads LABELS ref DEPENDS tmpdir
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/ref_grads.py $<TARGET_FILE:train_model_dump_grads>
          ${CMAKE_CURRENT_BINARY_DIR}/tmp/ref_grads)
# tokenize/train-model under mpirun: shards independent of rank count, replicas identical,
# 1 vs 2 ranks agree, SIGKILL + restart ends bitwise identical.
ms_script_test(train_model_mpi LABELS "mpi;e2e" DEPENDS tmpdir
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/train_mpi.sh)
set_tests_properties(train_model_mpi PROPERTIES PROCESSORS 2)
