# Robustness (issue 10): hangs, inputs that must be refused, resume with a changed job, output
# errors (label fault; each case bounds every run with `timeout`, so a hang fails, never stalls).
foreach(case hangs refuse resume outputs)
  ms_script_test(robust_${case} LABELS "fault;mpi" DEPENDS tmpdir
                 COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/robust.sh ${case})
  set_tests_properties(robust_${case} PROPERTIES PROCESSORS 2 TIMEOUT 600)
  set_property(TEST robust_${case} APPEND PROPERTY ENVIRONMENT "GEN_TOOL=$<TARGET_FILE:gen_tool>")
endforeach()
# Reliability round 3 (issue 23): outputs verified before a skip, whole-job validation, bounds on
# work, garbage refused, signals on every stage, full disks on every stage (label fault).
foreach(case skip validate garbage bounds diskfull)
  ms_script_test(round3_${case} LABELS "fault;mpi" DEPENDS tmpdir
                 COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/round3.sh ${case})
  set_tests_properties(round3_${case} PROPERTIES PROCESSORS 2 TIMEOUT 600 SKIP_REGULAR_EXPRESSION "^SKIP: ")
endforeach()
