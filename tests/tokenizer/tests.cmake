# GPT-2 BPE tokenizer and trainer (libmodel/tokenizer.c, bpe_train.c). The GPT-2 files are not
# committed: scripts/fetch-gpt2-bpe fills ${MS_GPT2_DIR} (scripts/test runs it before ctest);
# the tests fail (not skip) when they are absent.
if(DEFINED ENV{MS_GPT2_DIR})
  set(_ms_gpt2_default $ENV{MS_GPT2_DIR})
else()
  set(_ms_gpt2_default ${PROJECT_SOURCE_DIR}/data/gpt2)
endif()
set(MS_GPT2_DIR ${_ms_gpt2_default} CACHE PATH "directory holding GPT-2 encoder.json and vocab.bpe")

ms_unit_test(test_tokenizer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer.c LIBS msmodel PkgConfig::CJSON)
target_include_directories(test_tokenizer PRIVATE ${PROJECT_SOURCE_DIR}/libmodel)
set_tests_properties(test_tokenizer PROPERTIES FIXTURES_REQUIRED tmpdir)
set_property(TEST test_tokenizer APPEND PROPERTY ENVIRONMENT "MS_GPT2_DIR=${MS_GPT2_DIR}")
