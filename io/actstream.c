/* The trainer's shuffled, data-parallel row stream over an activations file: seeded block
 * permutation per epoch, seeded row permutation per window, each rank holding only its slice
 * of every global batch; exact resume from a small position record. */
#include "monosem/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ms_actstream {
    ms_actfile *f;
    ms_actstream_opts o;
    int rank, size;
    int64_t d, n_rows, elsize;
    int64_t R;       /* rows per block */
    int64_t nblocks; /* ceil(N / R) */
    int64_t K;       /* blocks per window */
    int64_t nwindows;
    int64_t lo, hi; /* this rank's slice of every global batch */

    int64_t *bperm; /* (nblocks) block order of the current epoch */
    int64_t bperm_epoch;

    /* current window */
    bool loaded;
    int64_t nraw;    /* raw rows in the window */
    int64_t *braw;   /* (K+1) window-local start row of each block */
    int64_t *good;   /* (K*R) raw local index of each kept row */
    int64_t *sigma;  /* (K*R) permutation of kept rows */
    int32_t *slot;   /* (K*R) raw local row -> slot in store, -1 not needed here */
    int64_t wlen;    /* kept rows = stream length of the window */
    int64_t cur_bad; /* rows skipped in this window */
    char *store;     /* (cap, d) this rank's rows of the window in consumption order, kept in
                      * the file's dtype (half the memory for float16; converted in next) */
    int64_t cap, n_store, consumed;
    char *stage;     /* (R, d) one block as stored */

    ms_streampos pos;
    int64_t bytes_read;
    int64_t empty_run; /* consecutive loaded windows with no kept row (all non-finite) */
};

void ms_actstream_close(ms_actstream *s)
{
    if (!s) return;
    free(s->bperm);
    free(s->braw);
    free(s->good);
    free(s->sigma);
    free(s->slot);
    free(s->store);
    free(s->stage);
    free(s);
}

int64_t ms_actstream_local_rows(const ms_actstream *s)
{
    return s->hi - s->lo;
}

ms_streampos ms_actstream_pos(const ms_actstream *s)
{
    return s->pos;
}

int64_t ms_actstream_skipped(const ms_actstream *s)
{
    return s->pos.skipped + (s->loaded ? s->cur_bad : 0);
}

int64_t ms_actstream_bytes_read(const ms_actstream *s)
{
    return s->bytes_read;
}

ms_status ms_actstream_open(ms_actstream **out, ms_actfile *f, const ms_actstream_opts *o,
                            int rank, int size, const ms_streampos *pos, ms_err *err)
{
    *out = NULL;
    const ms_actmeta *m = ms_actfile_meta(f);
    const char *path = ms_actfile_path(f);
    if (o->batch < size || size < 1 || rank < 0 || rank >= size)
        return ms_err_set(err, MS_ERR_USAGE,
                          "%s: global batch %lld cannot be split over %d ranks (need >= 1 row "
                          "per rank)",
                          path, (long long)o->batch, size);
    if (o->granule > 0 && (o->batch % o->granule != 0 || o->batch / o->granule < size))
        return ms_err_set(err, MS_ERR_USAGE,
                          "%s: global batch %lld is not %d or more whole granules of %lld rows", path,
                          (long long)o->batch, size, (long long)o->granule);
    if (m->n_rows < 1)
        return ms_err_set(err, MS_ERR_STATE, "%s: the activations file has no rows", path);
    ms_actstream *s = calloc(1, sizeof *s);
    if (!s) return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    s->f = f;
    s->o = *o;
    s->rank = rank;
    s->size = size;
    s->d = m->d;
    s->n_rows = m->n_rows;
    s->elsize = m->dtype == MS_DTYPE_F16 ? 2 : 4;
    s->R = o->block_rows > 0 ? o->block_rows : m->chunk_rows;
    if (s->R < 1) s->R = 1;
    if (s->R > s->n_rows) s->R = s->n_rows;
    s->nblocks = (s->n_rows + s->R - 1) / s->R;
    int64_t w = o->window_rows > 0 ? o->window_rows : s->R;
    s->K = (w + s->R - 1) / s->R;
    if (s->K > s->nblocks) s->K = s->nblocks;
    s->nwindows = (s->nblocks + s->K - 1) / s->K;
    if (o->granule > 0) { /* whole granules per rank (checked above) */
        ms_shard_range(o->batch / o->granule, rank, size, &s->lo, &s->hi);
        s->lo *= o->granule, s->hi *= o->granule;
    } else {
        ms_shard_range(o->batch, rank, size, &s->lo, &s->hi);
    }
    const int64_t W = s->K * s->R, b = s->hi - s->lo;
    /* this rank's rows of one window: at most b per started batch inside it */
    s->cap = (W / o->batch + 2) * b;
    if (s->cap > W) s->cap = W;
    if (o->limit > 0 && s->cap > o->limit) s->cap = o->limit;
    s->bperm = malloc((size_t)s->nblocks * sizeof *s->bperm);
    s->braw = malloc((size_t)(s->K + 1) * sizeof *s->braw);
    s->good = malloc((size_t)W * sizeof *s->good);
    s->sigma = malloc((size_t)W * sizeof *s->sigma);
    s->slot = malloc((size_t)W * sizeof *s->slot);
    s->store = malloc((size_t)(s->cap * s->d * s->elsize));
    s->stage = malloc((size_t)(s->R * s->d * s->elsize));
    if (!s->bperm || !s->braw || !s->good || !s->sigma || !s->slot || !s->store || !s->stage) {
        ms_actstream_close(s);
        return ms_err_set(err, MS_ERR_NOMEM,
                          "%s: out of memory for a shuffle window of %lld rows x %lld", path,
                          (long long)W, (long long)m->d);
    }
    /* touch every page now, not in the training loop (fresh pages cost ~0.4 s/GiB here) */
    memset(s->store, 0, (size_t)(s->cap * s->d * s->elsize));
    memset(s->stage, 0, (size_t)(s->R * s->d * s->elsize));
    memset(s->slot, 0xff, (size_t)W * sizeof *s->slot);
    s->bperm_epoch = -1;
    if (pos) {
        if (pos->epoch < 0 || pos->window < 0 || pos->window >= s->nwindows ||
            pos->next < pos->window_start || pos->next % o->batch != 0) {
            ms_actstream_close(s);
            return ms_err_set(err, MS_ERR_STATE,
                              "%s: saved reader position (epoch %lld, window %lld, next %lld) "
                              "does not fit this file and batch %lld",
                              path, (long long)pos->epoch, (long long)pos->window,
                              (long long)pos->next, (long long)o->batch);
        }
        s->pos = *pos;
    }
    *out = s;
    return MS_OK;
}

static void epoch_blocks(ms_actstream *s, int64_t epoch)
{
    if (s->bperm_epoch == epoch) return;
    if (s->o.shuffle)
        ms_rng_perm(s->bperm, s->nblocks, s->o.seed, (uint64_t)epoch, 0);
    else
        for (int64_t i = 0; i < s->nblocks; i++) s->bperm[i] = i;
    s->bperm_epoch = epoch;
}

static int64_t block_rows(const ms_actstream *s, int64_t blk)
{
    int64_t r0 = blk * s->R, r1 = r0 + s->R;
    return (r1 > s->n_rows ? s->n_rows : r1) - r0;
}

static ms_status read_block(ms_actstream *s, int64_t blk, ms_err *err)
{
    int64_t n = block_rows(s, blk);
    ms_status st = ms_actfile_read_raw(s->f, blk * s->R, n, s->stage, err);
    if (!st) s->bytes_read += n * s->d * s->elsize;
    return st;
}

/* A row as stored has no NaN/Inf: no element with an all-ones exponent (integer test,
 * vectorisable). */
static bool row_finite(const void *x, int64_t d, int64_t elsize)
{
    unsigned bad = 0;
    if (elsize == 2) {
        const uint16_t *h = x;
        for (int64_t j = 0; j < d; j++) bad |= (h[j] & 0x7c00u) == 0x7c00u;
    } else {
        const uint32_t *u = x;
        for (int64_t j = 0; j < d; j++) bad |= (u[j] & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* Loads the current window (pos.epoch, pos.window): the rows this rank needs from stream
 * position g0 on. */
static ms_status load_window(ms_actstream *s, int64_t g0, ms_err *err)
{
    const char *path = ms_actfile_path(s->f);
    epoch_blocks(s, s->pos.epoch);
    const int64_t b0 = s->pos.window * s->K;
    const int64_t nb = (b0 + s->K > s->nblocks ? s->nblocks : b0 + s->K) - b0;
    const int64_t *blocks = s->bperm + b0;
    s->braw[0] = 0;
    for (int64_t j = 0; j < nb; j++) s->braw[j + 1] = s->braw[j] + block_rows(s, blocks[j]);
    s->nraw = s->braw[nb];
    ms_status st = MS_OK;
    int64_t ng = 0;
    if (s->o.skip_nonfinite) {
        /* every rank scans the whole window so all agree on which rows exist */
        for (int64_t j = 0; j < nb && !st; j++) {
            st = read_block(s, blocks[j], err);
            for (int64_t i = 0; !st && i < s->braw[j + 1] - s->braw[j]; i++)
                if (row_finite(s->stage + i * s->d * s->elsize, s->d, s->elsize))
                    s->good[ng++] = s->braw[j] + i;
        }
        if (st) return st;
    } else {
        for (int64_t i = 0; i < s->nraw; i++) s->good[i] = i;
        ng = s->nraw;
    }
    s->wlen = ng;
    s->cur_bad = s->nraw - ng;
    if (s->o.shuffle)
        ms_rng_perm(s->sigma, ng, s->o.seed, (uint64_t)s->pos.epoch,
                       (uint64_t)s->pos.window + 1);
    else
        for (int64_t i = 0; i < ng; i++) s->sigma[i] = i;
    for (int64_t i = 0; i < s->nraw; i++) s->slot[i] = -1;
    const int64_t B = s->o.batch, ws = s->pos.window_start;
    int64_t c = 0;
    int64_t p = g0 > ws ? g0 - ws : 0;
    int64_t p_end = ng;
    if (s->o.limit > 0 && s->o.limit - ws < p_end) p_end = s->o.limit - ws;
    while (p < p_end) {
        int64_t in_batch = (ws + p) % B;
        if (in_batch < s->lo) { /* jump to this rank's slice of the same batch */
            p += s->lo - in_batch;
            continue;
        }
        if (in_batch >= s->hi) { /* jump to the next batch */
            p += B - in_batch + s->lo;
            continue;
        }
        if (c >= s->cap)
            return ms_err_set(err, MS_ERR_STATE, "%s: shuffle window overflow (internal)", path);
        s->slot[s->good[s->sigma[p]]] = (int32_t)c++;
        p++;
    }
    s->n_store = c;
    s->consumed = 0;
    /* read the blocks holding needed rows; copy them to their slots; check finiteness */
    int64_t bad_lo = -1, bad_hi = -1, n_bad = 0;
    for (int64_t j = 0; j < nb && !st; j++) {
        int64_t r0 = s->braw[j], r1 = s->braw[j + 1];
        bool any = false;
        for (int64_t i = r0; i < r1 && !any; i++) any = s->slot[i] >= 0;
        if (!any) continue;
        st = read_block(s, blocks[j], err);
        for (int64_t i = r0; !st && i < r1; i++) {
            if (s->slot[i] < 0) continue;
            const char *x = s->stage + (i - r0) * s->d * s->elsize;
            if (!s->o.skip_nonfinite && !row_finite(x, s->d, s->elsize)) {
                int64_t file_row = blocks[j] * s->R + (i - r0);
                if (bad_lo < 0 || file_row < bad_lo) bad_lo = file_row;
                if (file_row > bad_hi) bad_hi = file_row;
                n_bad++;
            }
            memcpy(s->store + (int64_t)s->slot[i] * s->d * s->elsize, x,
                   (size_t)(s->d * s->elsize));
        }
    }
    if (!st && n_bad > 0)
        st = ms_err_set(err, MS_ERR_NUMERIC,
                        "%s: /acts rows %lld..%lld: %lld row(s) in that range contain NaN/Inf "
                        "(set sae.skip_nonfinite: true to skip such rows)",
                        path, (long long)bad_lo, (long long)bad_hi, (long long)n_bad);
    if (!st) s->loaded = true;
    return st;
}

/* Raw rows of window w of the current block order (no I/O). */
static int64_t window_raw_rows(ms_actstream *s, int64_t w)
{
    epoch_blocks(s, s->pos.epoch);
    int64_t b0 = w * s->K, b1 = b0 + s->K > s->nblocks ? s->nblocks : b0 + s->K, n = 0;
    for (int64_t j = b0; j < b1; j++) n += block_rows(s, s->bperm[j]);
    return n;
}

/* Steps to the next window. A whole pass of windows without one finite row would repeat
 * forever (skip_nonfinite with repetition): that is an error, the same on every rank. */
static ms_status advance_window(ms_actstream *s, int64_t len, ms_err *err)
{
    if (s->loaded) s->empty_run = s->wlen == 0 ? s->empty_run + 1 : 0;
    if (s->empty_run >= s->nwindows)
        return ms_err_set(err, MS_ERR_NUMERIC,
                          "%s: no finite row in a full pass over /acts (%lld rows, all with NaN/Inf "
                          "skipped by sae.skip_nonfinite): nothing to train on",
                          ms_actfile_path(s->f), (long long)s->n_rows);
    s->pos.skipped += s->loaded ? s->cur_bad : 0;
    s->pos.window_start += len;
    s->pos.window++;
    s->loaded = false;
    s->cur_bad = 0;
    if (s->pos.window >= s->nwindows) {
        s->pos.epoch++;
        s->pos.window = 0;
    }
    return MS_OK;
}

static ms_status exhausted(ms_actstream *s, ms_err *err)
{
    return ms_err_set(err, MS_ERR_STATE,
                      "%s: reached the end of the data (%lld rows, %lld skipped as non-finite) "
                      "at stream row %lld; repetition is off: lower sae.steps or sae.batch, or "
                      "set sae.repeat: true",
                      ms_actfile_path(s->f), (long long)s->n_rows, (long long)s->pos.skipped,
                      (long long)s->pos.window_start);
}

/* Moves the current window to the one holding stream position pos.next, identically on every
 * rank (so a saved position does not depend on the rank), loading it when its length is only
 * known by scanning (skip_nonfinite). */
static ms_status normalize(ms_actstream *s, ms_err *err)
{
    for (;;) {
        if (s->pos.epoch > 0 && !s->o.repeat) return MS_OK; /* error raised when rows are asked */
        int64_t len;
        if (s->loaded)
            len = s->wlen;
        else if (!s->o.skip_nonfinite)
            len = window_raw_rows(s, s->pos.window);
        else {
            ms_status st = load_window(s, s->pos.next + s->lo, err);
            if (st) return st;
            len = s->wlen;
        }
        if (s->pos.next < s->pos.window_start + len) return MS_OK;
        ms_status st = advance_window(s, len, err);
        if (st) return st;
    }
}

ms_status ms_actstream_next(ms_actstream *s, float *out, ms_err *err)
{
    ms_status st = MS_OK;
    const int64_t b = s->hi - s->lo;
    for (int64_t i = 0; i < b; i++) {
        int64_t g = s->pos.next + s->lo + i;
        for (;;) {
            if (s->pos.epoch > 0 && !s->o.repeat) return exhausted(s, err);
            if (!s->loaded && (st = load_window(s, g, err))) return st;
            if (g < s->pos.window_start + s->wlen) break;
            if ((st = advance_window(s, s->wlen, err))) return st;
        }
        if (s->consumed >= s->n_store)
            return ms_err_set(err, MS_ERR_STATE, "%s: stream slot underflow (internal)",
                              ms_actfile_path(s->f));
        const char *row = s->store + s->consumed * s->d * s->elsize;
        if (s->elsize == 2)
            ms_half_to_float_n(out + i * s->d, (const uint16_t *)row, (size_t)s->d);
        else
            memcpy(out + i * s->d, row, (size_t)s->d * sizeof(float));
        s->consumed++;
    }
    s->pos.next += s->o.batch;
    return normalize(s, err);
}
