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

# Trainer and encoder against an independent pure-Python BPE (tests/tokenizer/bpe_ref.py), through
# `monosem tokenizer-train` (1 and 2 ranks) and `monosem encode`.
ms_script_test(tokenizer_train_ref LABELS "ref;e2e"
  COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/bpe_ref.py
          ${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/genesis_1_2.txt
          ${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/moby_ch1.txt --merges 400)
set_property(TEST tokenizer_train_ref APPEND PROPERTY ENVIRONMENT "MS_GPT2_DIR=${MS_GPT2_DIR}")

# The encode/decode CLI on the GPT-2 files (fixtures, stdin, 25 MB streaming, random bytes, errors).
ms_script_test(tokenizer_cli LABELS e2e COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/tokenizer_cli.sh)
set_property(TEST tokenizer_cli APPEND PROPERTY ENVIRONMENT "MS_GPT2_DIR=${MS_GPT2_DIR}")
ms_script_test(tokenizer_train_keep LABELS e2e COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/keep_test.sh)
