# SAE trainer data path and stage: activations store, shuffled row stream, train stage (issue 5).
ms_unit_test(test_actstore SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_actstore.c LIBS msio)
set_tests_properties(test_actstore PROPERTIES FIXTURES_REQUIRED tmpdir)
