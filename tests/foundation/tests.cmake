# Foundation tests: config parser, queue/sharding/progress and the RNG (unit), MPI module and bad job files (mpi).
ms_unit_test(test_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_config.c LIBS msjob)
ms_unit_test(test_queue SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_queue.c LIBS msio)
ms_unit_test(test_rng SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rng.c LIBS msio)
add_executable(test_comm_mpi ${CMAKE_CURRENT_LIST_DIR}/test_comm_mpi.c)
target_link_libraries(test_comm_mpi PRIVATE msio)
ms_mpi_test(comm_mpi_2 2 COMMAND $<TARGET_FILE:test_comm_mpi>)
ms_mpi_test(comm_mpi_4 4 COMMAND $<TARGET_FILE:test_comm_mpi>)
ms_script_test(config_bad_jobs_mpi LABELS mpi COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/bad_jobs.sh)
ms_script_test(config_demo_mpi LABELS mpi COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/config_demo.sh ${PROJECT_SOURCE_DIR}/jobs/demo.yaml)
ms_script_test(config_paper_sweep_mpi LABELS mpi COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/config_demo.sh ${PROJECT_SOURCE_DIR}/jobs/paper-a-sweep.yaml)
add_executable(test_runrec_mpi ${CMAKE_CURRENT_LIST_DIR}/test_runrec_mpi.c)
target_link_libraries(test_runrec_mpi PRIVATE msjob)
ms_mpi_test(runrec_mpi_3 3 COMMAND $<TARGET_FILE:test_runrec_mpi>)
# (not in the sanitizer build: the consumer is linked without the sanitizer runtime)
if(NOT MONOSEM_SANITIZE)
  ms_script_test(install_consumer LABELS e2e COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/install_test.sh ${PROJECT_BINARY_DIR})
endif()
# Threads follow the CPU binding (issue 15): mpirun's default core binding, --bind-to none,
# two unbound ranks, run.blas_threads above the mask (one warning line).
add_executable(threads_probe ${CMAKE_CURRENT_LIST_DIR}/threads_probe.c)
target_link_libraries(threads_probe PRIVATE msio)
ms_script_test(threads_binding_mpi LABELS "mpi;unit" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/threads_binding.sh
               $<TARGET_FILE:threads_probe>)
set_tests_properties(threads_binding_mpi PROPERTIES PROCESSORS 2)
# MS_INVARIANT: rank:file:line on stderr, every rank ends with 70 (EX_SOFTWARE), no hang.
add_executable(invariant_probe ${CMAKE_CURRENT_LIST_DIR}/invariant_probe.c)
target_link_libraries(invariant_probe PRIVATE msio)
ms_script_test(invariant_mpi LABELS "mpi;fault" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/invariant.sh
               $<TARGET_FILE:invariant_probe>)
set_tests_properties(invariant_mpi PROPERTIES PROCESSORS 2)
