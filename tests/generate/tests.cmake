# Activation generation (monosem generate / inspect): plan unit test; e2e + NumPy reference script.
ms_unit_test(test_generate_plan SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_generate_plan.c
  ${PROJECT_SOURCE_DIR}/apps/generate_plan.c LIBS msio)
target_include_directories(test_generate_plan PRIVATE ${PROJECT_SOURCE_DIR}/apps)
add_executable(gen_tool ${CMAKE_CURRENT_LIST_DIR}/gen_tool.c)
target_link_libraries(gen_tool PRIVATE msmodel msio)
ms_script_test(generate_e2e LABELS "mpi;e2e;ref" COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/generate.sh)
set_property(TEST generate_e2e APPEND PROPERTY ENVIRONMENT "GEN_TOOL=$<TARGET_FILE:gen_tool>")
