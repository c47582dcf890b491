# libsae mathematics (issue 5, kernels and recipes): unit tests and the NumPy reference.
ms_unit_test(test_sae_math SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sae_math.c LIBS mssae)
target_include_directories(test_sae_math PRIVATE ${PROJECT_SOURCE_DIR}/libsae)

# NumPy (float64) reference of two steps of every arch, incl. relu-l1's parallel-component
# removal and Adam; must agree to 1e-5 (label ref).
add_executable(sae_ref_driver ${CMAKE_CURRENT_LIST_DIR}/ref_driver.c)
target_link_libraries(sae_ref_driver PRIVATE mssae)
ms_script_test(sae_numpy_reference LABELS ref
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/ref_sae.py $<TARGET_FILE:sae_ref_driver>
          ${CMAKE_CURRENT_BINARY_DIR}/tmp/sae_ref)
