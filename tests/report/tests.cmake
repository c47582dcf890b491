# Report stage (issue 13): data files against their sources, errors, the page in headless Chromium.
ms_unit_test(test_report_units SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_report_units.c
             ${PROJECT_SOURCE_DIR}/apps/report_json.c ${PROJECT_SOURCE_DIR}/apps/report_nearest.c
             LIBS msio PkgConfig::OPENBLAS ${MATH_LIB})
target_include_directories(test_report_units PRIVATE ${PROJECT_SOURCE_DIR}/apps)
ms_script_test(report_data LABELS "mpi;ref;e2e" DEPENDS tmpdir COMMAND ${CMAKE_CURRENT_LIST_DIR}/report_test.sh data)
ms_script_test(report_errors LABELS "mpi;e2e" DEPENDS tmpdir COMMAND ${CMAKE_CURRENT_LIST_DIR}/report_test.sh errors)
ms_script_test(report_browser LABELS "browser" DEPENDS tmpdir COMMAND ${CMAKE_CURRENT_LIST_DIR}/report_test.sh browser)
set_tests_properties(report_data report_errors PROPERTIES PROCESSORS 2)
set_tests_properties(report_browser PROPERTIES TIMEOUT 300)
