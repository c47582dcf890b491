# Model trainer: backward (finite differences, BLAS vs naive, NumPy reference), AdamW,
# checkpoints, data-parallel training (ranks agree, 1 vs 2 ranks, kill -9 / resume identity).
ms_unit_test(test_train_backward SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_backward.c LIBS msmodel m)
set_tests_properties(test_train_backward PROPERTIES FIXTURES_REQUIRED tmpdir)
