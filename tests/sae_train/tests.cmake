# SAE trainer data path and stage: activations store, shuffled row stream, train stage (issue 5).
ms_unit_test(test_actstore SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_actstore.c LIBS msio)
set_tests_properties(test_actstore PROPERTIES FIXTURES_REQUIRED tmpdir)

# parallel HDF5 writer: independent hyperslab writes, crash + resume from /progress, finalize
add_executable(test_actwriter_mpi ${CMAKE_CURRENT_LIST_DIR}/test_actwriter_mpi.c)
target_link_libraries(test_actwriter_mpi PRIVATE msio)
ms_mpi_test(sae_actwriter_mpi 2 COMMAND $<TARGET_FILE:test_actwriter_mpi>
            ${CMAKE_CURRENT_BINARY_DIR}/tmp/actwriter.h5)
set_tests_properties(sae_actwriter_mpi PROPERTIES FIXTURES_REQUIRED tmpdir FIXTURES_SETUP actwriter_file)
# h5py reads the C-written activations file as docs/formats.md documents it
ms_script_test(sae_actstore_h5py LABELS ref DEPENDS "tmpdir;actwriter_file"
               COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/check_formats.py acts
               ${CMAKE_CURRENT_BINARY_DIR}/tmp/actwriter.h5)

# the train stage under mpirun (synthetic activations with known ground truth, h5py-written)
foreach(case ranks resume recovery badinput archs memory resample final repro)
  ms_script_test(sae_train_${case} LABELS "mpi;e2e" DEPENDS tmpdir
                 COMMAND ${CMAKE_CURRENT_LIST_DIR}/train_test.sh ${case})
  set_tests_properties(sae_train_${case} PROPERTIES PROCESSORS 2)
endforeach()

# the documented row order, recomputed independently in Python (seeds, windows, epochs, ranks)
add_executable(stream_dump ${CMAKE_CURRENT_LIST_DIR}/stream_dump.c)
target_link_libraries(stream_dump PRIVATE msio)
ms_script_test(sae_stream_ref LABELS ref DEPENDS tmpdir
               COMMAND ${MS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/stream_ref.py
               $<TARGET_FILE:stream_dump> ${CMAKE_CURRENT_BINARY_DIR}/tmp)
