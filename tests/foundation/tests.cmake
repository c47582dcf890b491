# Foundation tests: config parser, queue/sharding/progress (unit), MPI module and bad job files (mpi).
ms_unit_test(test_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_config.c LIBS msio)
ms_unit_test(test_queue SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_queue.c LIBS msio)
add_executable(test_comm_mpi ${CMAKE_CURRENT_LIST_DIR}/test_comm_mpi.c)
target_link_libraries(test_comm_mpi PRIVATE msio)
ms_mpi_test(comm_mpi_2 2 COMMAND $<TARGET_FILE:test_comm_mpi>)
ms_mpi_test(comm_mpi_4 4 COMMAND $<TARGET_FILE:test_comm_mpi>)
ms_script_test(config_bad_jobs_mpi LABELS mpi COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/bad_jobs.sh)
ms_script_test(config_demo_mpi LABELS mpi COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/config_demo.sh ${PROJECT_SOURCE_DIR}/jobs/demo.yaml)
