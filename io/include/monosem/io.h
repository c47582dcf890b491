/* monosem/io.h: the one public header of libmsio, the layer every library and app stands on;
 * it includes one header per concern (below), each opening with its own conventions.
 *
 * Conventions of the whole library:
 * - Names: ms_<object>_<verb> (ms_tokshard_open, ms_actwriter_write_rows); an object that owns
 *   memory or a handle comes in a pair, _init/_free or _open/_close (_create/_finalize for a
 *   writer), and the release call is safe on a zeroed or NULL object and after a failed open.
 *   Tensors are row-major with a shape comment; new calls put outputs before inputs before
 *   sizes.
 * - Errors: a fallible call returns an ms_status and fills an ms_err (NULL allowed) with one line
 *   naming the file, the place (file:line:col for text inputs, the tensor, the row range) and
 *   what was expected; the first error set wins. Nothing aborts on bad input or OOM (callers
 *   return MS_ERR_NOMEM so every rank can exit together); MS_INVARIANT is for states that
 *   cannot happen.
 * - Ownership: buffers and arrays passed in stay the caller's; what a call returns malloc'd or
 *   opens is the caller's to release with the named _free/_close; borrowed views say so (and
 *   how long they live).
 * - Collective calls: marked COLLECTIVE, they must be reached by every rank of the communicator
 *   in the same order, and those returning a status give every rank the same verdict (the worst
 *   status, the lowest failing rank's message: ms_comm_agree), so ranks exit together. Calls
 *   not marked are local to the process; MPI itself is called only in io/comm.c.
 * - Threads: MPI, HDF5, logging and the test hooks are main-thread only; a reader, writer or
 *   stream handle is used by one thread at a time; pure helpers (rng, half, sha256, sharding,
 *   progress arithmetic) are thread-safe. Thread counts follow the affinity mask (comm.h).
 *
 * Headers (in io/include/monosem/; a file that needs only one may include it directly):
 *   status.h      ms_status, ms_err, MS_INVARIANT, the version
 *   enums.h       the enums the job file and the libraries share, and their names
 *   comm.h        MPI: collectives, work queue, sharding, threads from the binding, stop agreement
 *   signals.h     stop signals (SIGTERM, SIGINT, SIGUSR1)
 *   testhook.h    fault injection at reported points (MONOSEM_TEST_HOOK)
 *   log.h         rank-0 logging, the progress meter, clocks
 *   files.h       files, sha256, FNV-1a, strict integer parsing
 *   lock.h        output locks
 *   rng.h         SplitMix64: mixer, step, counter-based stream, seeded permutation
 *   safetensors.h safetensors reader and writer
 *   checkpoint.h  which checkpoint to resume (latest or .prev)
 *   h5.h          HDF5 helpers (no other layer includes hdf5.h)
 *   half.h        fp16 <-> fp32
 *   actstore.h    activations.h5 writer and reader
 *   actstream.h   the trainer's shuffled row stream
 *   corpus.h      corpus readers, held-out split, token shards, the tokenize core */
#ifndef MONOSEM_IO_H
#define MONOSEM_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "monosem/status.h"
#include "monosem/enums.h"
#include "monosem/comm.h"
#include "monosem/signals.h"
#include "monosem/testhook.h"
#include "monosem/log.h"
#include "monosem/files.h"
#include "monosem/lock.h"
#include "monosem/rng.h"
#include "monosem/safetensors.h"
#include "monosem/checkpoint.h"
#include "monosem/h5.h"
#include "monosem/half.h"
#include "monosem/actstore.h"
#include "monosem/actstream.h"
#include "monosem/corpus.h"

#endif
