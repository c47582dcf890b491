# Fuzz harnesses (tests/fuzz/fuzz_<name>.c): each one's committed corpus seeds-<name>/ is
# replayed by ctest with the normal compiler (replay_main.c; label unit); with MONOSEM_FUZZ
# (clang) the libFuzzer binaries fuzz_<name> are built too (tests/fuzz/run.sh runs them).
# The safetensors harness's replay is declared in tests/model/tests.cmake.
set(_fz ${CMAKE_CURRENT_LIST_DIR})
foreach(h config tokenizer_files bpe tokens checkpoint)
  set(_libs msio)
  if(h STREQUAL "config")
    list(APPEND _libs msjob) # the job file's loader is the job layer's
  endif()
  if(h MATCHES "tokenizer_files|bpe|checkpoint")
    list(APPEND _libs msmodel)
  endif()
  if(h STREQUAL "checkpoint")
    list(APPEND _libs msapps) # the SAE trainer's checkpoint reader lives in apps
  endif()
  add_executable(fuzz_${h}_replay ${_fz}/fuzz_${h}.c ${_fz}/replay_main.c)
  target_link_libraries(fuzz_${h}_replay PRIVATE ${_libs})
  file(GLOB _seeds ${_fz}/seeds-${h}/*)
  add_test(NAME fuzz_${h}_replay COMMAND fuzz_${h}_replay ${_seeds})
  set_tests_properties(fuzz_${h}_replay PROPERTIES LABELS unit TIMEOUT 300
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1;OPENBLAS_NUM_THREADS=1")
  if(MONOSEM_FUZZ)
    add_executable(fuzz_${h} ${_fz}/fuzz_${h}.c)
    target_link_libraries(fuzz_${h} PRIVATE ${_libs})
    target_link_options(fuzz_${h} PRIVATE -fsanitize=fuzzer)
  endif()
endforeach()
if(MONOSEM_FUZZ)
  add_executable(fuzz_safetensors ${_fz}/fuzz_safetensors.c)
  target_link_libraries(fuzz_safetensors PRIVATE msio)
  target_link_options(fuzz_safetensors PRIVATE -fsanitize=fuzzer)
endif()
