# Corpus readers, token shards, held-out split, rank-sharded tokenize core (io/corpus.c).
ms_unit_test(test_corpus SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_corpus.c LIBS msio)
set_tests_properties(test_corpus PROPERTIES FIXTURES_REQUIRED tmpdir)
