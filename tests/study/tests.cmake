# The study (issue 14): several SAEs and model B in one job file (config), the correlation
# and matching statistics against NumPy on 1 and 3 ranks (ref), and `monosem run` end to end
# with skip / redo decisions and summary.json (e2e).
ms_unit_test(test_study_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_study_config.c LIBS msio)
