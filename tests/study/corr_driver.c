/* Drives the unit-matching statistics as the compare stage does, for ref_corr.py: each rank
 * adds its share of rows (in odd-sized chunks) to column blocks of the correlation sums, ONE
 * allreduce per block, then best matches; decoder cosines and families from the weights.
 * usage: corr_driver DIR da db d n block_cols. Reads DIR/{a,b}.f32 (n,da),(n,db) and
 * DIR/{Wa,Wb}.f32 (da,d),(db,d); rank 0 writes DIR/out_*.bin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/io.h"
#include "monosem/units.h"

static float *read_f32(const char *dir, const char *name, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    float *x = malloc(n * sizeof *x);
    if (!f || !x || fread(x, sizeof *x, n, f) != n) {
        fprintf(stderr, "cannot read %s\n", p);
        exit(1);
    }
    fclose(f);
    return x;
}

static void write_bin(const char *dir, const char *name, const void *x, size_t bytes)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/out_%s.bin", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(x, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    ms_comm comm;
    ms_err err = {0};
    if (argc != 7 || ms_comm_init(&comm, &argc, &argv, &err)) return 2;
    const char *dir = argv[1];
    const int64_t da = atoll(argv[2]), db = atoll(argv[3]), d = atoll(argv[4]), n = atoll(argv[5]),
                  blk = atoll(argv[6]);
    float *a = read_f32(dir, "a.f32", (size_t)(n * da)), *b = read_f32(dir, "b.f32", (size_t)(n * db));
    float *Wa = read_f32(dir, "Wa.f32", (size_t)(da * d)), *Wb = read_f32(dir, "Wb.f32", (size_t)(db * d));
    float *row_max = malloc((size_t)da * 4), *col_max = malloc((size_t)db * 4);
    int64_t *row_arg = malloc((size_t)da * 8), *col_arg = malloc((size_t)db * 8);
    for (int64_t i = 0; i < da; i++) row_max[i] = -1.0f / 0.0f, row_arg[i] = -1;
    int64_t r0, r1;
    ms_shard_range(n, comm.rank, comm.size, &r0, &r1);
    int n_reduce = 0;
    for (int64_t b0 = 0; b0 < db; b0 += blk) {
        int64_t b1 = b0 + blk < db ? b0 + blk : db;
        ms_corr c;
        if (ms_corr_init(&c, da, db, b0, b1, &err)) return 1;
        for (int64_t r = r0; r < r1; r += 7) {
            int64_t m = r1 - r < 7 ? r1 - r : 7;
            ms_corr_add(&c, a + r * da, b + r * db, m);
        }
        if (ms_comm_allreduce_f64(&comm, c.sums, c.n_sums, &err)) return 1;
        n_reduce++;
        ms_corr_best(&c, row_max, row_arg, col_max, col_arg);
        ms_corr_free(&c);
    }
    float *crow = malloc((size_t)da * 4), *ccol = malloc((size_t)db * 4);
    int64_t *crow_a = malloc((size_t)da * 8), *ccol_a = malloc((size_t)db * 8);
    int64_t *member = malloc((size_t)db * 8), *size = malloc((size_t)da * 8);
    if (ms_decoder_best(crow, crow_a, ccol, ccol_a, Wa, Wb, da, db, d, &err)) return 1;
    int64_t nf = ms_families(member, size, ccol, ccol_a, db, da, 0.3f);
    float *scratch = malloc((size_t)(da > db ? da : db) * 4);
    double med = ms_median_f32(row_max, da, scratch);
    int64_t hist[10];
    int64_t used = ms_histogram_f32(hist, 10, -1, 1, row_max, da);
    if (comm.rank == 0) {
        write_bin(dir, "row_max", row_max, (size_t)da * 4);
        write_bin(dir, "row_arg", row_arg, (size_t)da * 8);
        write_bin(dir, "col_max", col_max, (size_t)db * 4);
        write_bin(dir, "col_arg", col_arg, (size_t)db * 8);
        write_bin(dir, "cos_row_max", crow, (size_t)da * 4);
        write_bin(dir, "cos_row_arg", crow_a, (size_t)da * 8);
        write_bin(dir, "cos_col_max", ccol, (size_t)db * 4);
        write_bin(dir, "cos_col_arg", ccol_a, (size_t)db * 8);
        write_bin(dir, "member", member, (size_t)db * 8);
        write_bin(dir, "size", size, (size_t)da * 8);
        write_bin(dir, "hist", hist, sizeof hist);
        printf("{\"median\": %.9g, \"families\": %lld, \"hist_used\": %lld, \"reductions\": %d}\n", med, (long long)nf,
               (long long)used, n_reduce);
    }
    free(a), free(b), free(Wa), free(Wb), free(row_max), free(col_max), free(row_arg), free(col_arg);
    free(crow), free(ccol), free(crow_a), free(ccol_a), free(member), free(size), free(scratch);
    ms_comm_finalize(&comm);
    return 0;
}
