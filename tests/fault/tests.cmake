# Fault tests (label fault): reproducibility across ranks/batches/threads, corrupted state,
# locked output directories, kill -9 at random moments, a full disk. Each is bounded in time.
ms_script_test(fault_gen_repro LABELS "fault;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/gen_repro.sh)
set_property(TEST fault_gen_repro APPEND PROPERTY ENVIRONMENT "GEN_TOOL=$<TARGET_FILE:gen_tool>")
set_tests_properties(fault_gen_repro PROPERTIES TIMEOUT 300)
ms_script_test(fault_lock LABELS "fault;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/lock.sh)
set_tests_properties(fault_lock PROPERTIES TIMEOUT 600)
ms_script_test(fault_corrupt LABELS "fault;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/corrupt.sh)
set_tests_properties(fault_corrupt PROPERTIES TIMEOUT 600)
ms_script_test(fault_kill LABELS "fault;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/kill.sh 1 2 3)
set_tests_properties(fault_kill PROPERTIES TIMEOUT 900)
ms_script_test(fault_diskfull LABELS "fault;mpi" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/diskfull.sh)
set_property(TEST fault_diskfull APPEND PROPERTY ENVIRONMENT "GEN_TOOL=$<TARGET_FILE:gen_tool>")
set_tests_properties(fault_diskfull PROPERTIES TIMEOUT 600 SKIP_REGULAR_EXPRESSION "^SKIP: ")
