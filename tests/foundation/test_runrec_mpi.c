/* MPI test of the run record: timers reduced to min/avg/max over ranks, facts, the resolved
 * config and versions land in <dir>/run-<stage>.yaml and run.yaml, written by rank 0 only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/io.h"
#include "monosem/job.h"

static int fails = 0;
#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            fails++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
        }                                                                     \
    } while (0)

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (ms_comm_init(&comm, &argc, &argv, &err)) return 1;
    const char *tmp = getenv("MS_TEST_TMP");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/runrec", tmp ? tmp : ".");
    ms_config cfg;
    const char *job = "run: {name: rr}\nsae: {d_sae: 1234}\n";
    CHECK(ms_config_parse(&cfg, "rr.yaml", job, strlen(job), NULL, 0, NULL, &err) == MS_OK);
    ms_runrec rec;
    ms_runrec_init(&rec, "unit");
    ms_runrec_time(&rec, "compute", 1.0 + comm.rank); /* min 1, max P */
    ms_runrec_time(&rec, "compute", 1.0);             /* accumulates: min 2, max P+1 */
    ms_runrec_fact(&rec, "rows", "%d", 42);
    ms_runrec_fact(&rec, "rows", "%d", 43); /* later sets overwrite */
    CHECK(ms_runrec_write(&rec, &comm, &cfg, dir, MS_OK, &err) == MS_OK);
    ms_comm_barrier(&comm);
    if (comm.rank == 0) {
        char path[4200], *text = NULL;
        size_t len;
        snprintf(path, sizeof path, "%s/run-unit.yaml", dir);
        CHECK(ms_file_read_all(path, &text, &len, &err) == MS_OK);
        if (text) {
            char want[128];
            CHECK(strstr(text, "stage: unit\n") != NULL);
            CHECK(strstr(text, "status: ok\n") != NULL);
            snprintf(want, sizeof want, "ranks: %d\n", comm.size);
            CHECK(strstr(text, want) != NULL);
            snprintf(want, sizeof want, "config_hash: %s\n", cfg.hash);
            CHECK(strstr(text, want) != NULL);
            snprintf(want, sizeof want, "  compute:\n    min: 2\n    avg: %g\n    max: %d\n", 2 + (comm.size - 1) / 2.0,
                     comm.size + 1);
            CHECK(strstr(text, want) != NULL);
            CHECK(strstr(text, "rows: 43\n") != NULL);
            CHECK(strstr(text, "    d_sae: 1234\n") != NULL);
            CHECK(strstr(text, "hdf5: 1.") != NULL);
            if (fails) fprintf(stderr, "%s", text);
            free(text);
        }
        snprintf(path, sizeof path, "%s/run.yaml", dir);
        CHECK(ms_path_exists(path));
    }
    ms_config_free(&cfg);
    int64_t f = fails;
    ms_comm_allreduce_i64(&comm, &f, 1, &err);
    if (comm.rank == 0) printf("%s\n", f ? "FAILED" : "run record ok");
    ms_comm_finalize(&comm);
    return f ? 1 : 0;
}
