# Code shape (issue 21): file and function sizes of the libraries and apps.
ms_script_test(code_sizes LABELS unit COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/sizes.sh ${PROJECT_SOURCE_DIR})
ms_script_test(headers_standalone LABELS unit COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/headers.sh ${PROJECT_SOURCE_DIR} ${CMAKE_C_COMPILER})
