/* Prints the rows of the first `steps` global batches of the shuffled stream as P ranks would
 * read them (all ranks simulated in this process, slices concatenated in rank order), one row
 * id (column 0 of the row) per line. For stream_ref.py, which recomputes the documented order.
 *   stream_dump FILE.h5 BATCH RANKS WINDOW SEED SHUFFLE(0|1) STEPS */
#include <stdio.h>
#include <stdlib.h>

#include "monosem/io.h"

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: stream_dump FILE BATCH RANKS WINDOW SEED SHUFFLE STEPS\n");
        return 2;
    }
    ms_err err = {0};
    ms_actfile *f;
    if (ms_actfile_open(&f, argv[1], NULL, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    ms_actstream_opts o = {.batch = atoll(argv[2]), .window_rows = atoll(argv[4]),
                           .seed = strtoull(argv[5], NULL, 10), .shuffle = atoi(argv[6]) != 0,
                           .repeat = true};
    int P = atoi(argv[3]);
    int64_t steps = atoll(argv[7]), d = ms_actfile_meta(f)->d;
    int64_t *ids = malloc((size_t)(steps * o.batch) * sizeof *ids);
    for (int r = 0; r < P; r++) {
        ms_actstream *s;
        if (ms_actstream_open(&s, f, &o, r, P, NULL, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        int64_t lo, hi;
        ms_shard_range(o.batch, r, P, &lo, &hi);
        float *x = malloc((size_t)((hi - lo) * d) * sizeof *x);
        for (int64_t k = 0; k < steps; k++) {
            if (ms_actstream_next(s, x, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
            for (int64_t i = 0; i < hi - lo; i++) ids[k * o.batch + lo + i] = (int64_t)x[i * d];
        }
        free(x);
        ms_actstream_close(s);
    }
    for (int64_t i = 0; i < steps * o.batch; i++) printf("%lld\n", (long long)ids[i]);
    free(ids);
    ms_actfile_close(f);
    return 0;
}
