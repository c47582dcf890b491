/* MS_INVARIANT's probe: rank 1 (or the only process, before MPI) trips an invariant while the
 * other ranks wait in a barrier that only the job-wide abort can end. */
#include "monosem/io.h"

#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "nompi") == 0) {
        MS_INVARIANT(argc == 1); /* fails: no MPI yet, plain exit */
        return 0;
    }
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err)) return 1;
    MS_INVARIANT(comm.rank != 1);
    ms_comm_barrier(&comm); /* rank 0 waits here for a rank that never comes */
    ms_comm_finalize(&comm);
    return 0;
}
