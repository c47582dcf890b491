# libsae mathematics (issue 5, kernels and recipes): unit tests and the NumPy reference.
ms_unit_test(test_sae_math SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sae_math.c LIBS mssae)
target_include_directories(test_sae_math PRIVATE ${PROJECT_SOURCE_DIR}/libsae)
