/* `monosem forward MODEL_DIR TOKENS --hook NAME --out out.h5`: run a model on token ids (one
 * context per line) and write /logits (B,T,V), /loss (B,T-1) and /hook (B,T,d) as float32, for
 * people checking a converted checkpoint against their own framework. Rank 0 does the work with
 * the serial HDF5 API; other ranks return at once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "monosem/model.h"

/* logits are B*T*V floats: run the batch in slices of at most this many bytes of logits */
#define FORWARD_LOGITS_BYTES (256u << 20)

/* Writes rows [b0, b0+nb) of a dataset whose first dimension is the context. */
static int write_rows(ms_h5id dset, int rank, const int64_t *dims, int64_t b0, int64_t nb, const float *buf)
{
    int64_t start[3] = {b0, 0, 0}, count[3] = {nb, dims[1], rank > 2 ? dims[2] : 1};
    return ms_h5_dataset_write(dset, MS_SAFETENSORS_F32, rank, start, count, buf);
}

/* Contexts must fit the model's n_ctx and its vocabulary. */
static ms_status check_tokens(const ms_model *m, const int32_t *tok, int B, int T, const char *tpath, ms_err *err)
{
    if (T > m->cfg.n_ctx)
        return ms_err_set(err, MS_ERR_USAGE, "%s: contexts of %d tokens, but the model's n_ctx is %d", tpath, T,
                          m->cfg.n_ctx);
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tok[i] >= m->cfg.d_vocab)
            return ms_err_set(err, MS_ERR_USAGE, "%s:%zu: token id %d outside the model's vocabulary (d_vocab %d)",
                              tpath, i / (size_t)T + 1, tok[i], m->cfg.d_vocab);
    return MS_OK;
}

/* Contexts per forward pass: --batch, or as many as keep the logits under FORWARD_LOGITS_BYTES. */
static ms_status pick_slice(const char *batch_opt, int B, int T, int V, int *slice_out, ms_err *err)
{
    int slice = (int)(FORWARD_LOGITS_BYTES / ((size_t)T * V * sizeof(float)));
    if (slice < 1) slice = 1;
    if (batch_opt) {
        char *e;
        long v = strtol(batch_opt, &e, 10);
        if (*e || v < 1 || v > 1 << 20)
            return ms_err_set(err, MS_ERR_USAGE, "--batch %s: expected a positive integer", batch_opt);
        slice = (int)v;
    }
    *slice_out = slice > B ? B : slice;
    return MS_OK;
}

ms_status app_stage_forward(app_ctx *app, ms_err *err)
{
    if (app->comm.rank != 0) return MS_OK;
    const char *mdir = app_positional(app, 0), *tpath = app_positional(app, 1);
    const char *hook_name = app_option(app, "hook"), *out = app_option(app, "out");
    const char *batch_opt = app_option(app, "batch");
    if (!mdir || !tpath || !out)
        return ms_err_set(err, MS_ERR_USAGE, "usage: monosem forward MODEL_DIR TOKENS --hook NAME --out out.h5 [--batch N]");
    if (!hook_name) hook_name = "blocks.0.mlp.hook_post";

    ms_model m;
    ms_model_acts a = {0};
    int32_t *tok = NULL, *tg = NULL;
    float *hookbuf = NULL, *lossbuf = NULL;
    ms_h5id f = -1, dl = -1, dloss = -1, dh = -1;
    char tmp[4096] = "";
    ms_status rc = ms_model_load(&m, mdir, err);
    if (rc) return rc;
    int B, T;
    ms_hook h;
    rc = ms_tokens_load_text(tpath, &tok, &B, &T, err);
    if (!rc) rc = check_tokens(&m, tok, B, T, tpath, err);
    if (rc) goto done;
    rc = ms_hook_parse(&h, hook_name, &m.cfg, err);
    if (rc) goto done;
    const int d = ms_hook_dim(&m.cfg, h), V = m.cfg.d_vocab;
    int slice = 1;
    rc = pick_slice(batch_opt, B, T, V, &slice, err);
    if (!rc) rc = ms_model_acts_init(&a, &m.cfg, slice, T, 0, err);
    if (rc) goto done;
    hookbuf = malloc((size_t)slice * T * d * sizeof(float));
    lossbuf = malloc((size_t)slice * T * sizeof(float));
    tg = malloc((size_t)B * T * sizeof *tg);
    if (!hookbuf || !lossbuf || !tg) {
        rc = ms_err_set(err, MS_ERR_NOMEM, "forward: out of memory");
        goto done;
    }
    ms_model_next_targets(tg, tok, B, T);

    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    int64_t dims_l[3] = {B, T, V}, dims_s[2] = {B, T - 1}, dims_h[3] = {B, T, d};
    f = ms_h5_file_create(tmp);
    if (f < 0 || (dl = ms_h5_dataset_create(f, "logits", MS_SAFETENSORS_F32, 3, dims_l)) < 0 ||
        (dloss = ms_h5_dataset_create(f, "loss", MS_SAFETENSORS_F32, 2, dims_s)) < 0 ||
        (dh = ms_h5_dataset_create(f, "hook", MS_SAFETENSORS_F32, 3, dims_h)) < 0) {
        rc = ms_err_set(err, MS_ERR_IO, "%s: cannot create the HDF5 file or its datasets: %s", out,
                        ms_create_error(tmp));
        goto done;
    }
    double loss_sum = 0;
    int64_t loss_n = 0;
    for (int b0 = 0; b0 < B; b0 += slice) {
        int nb = B - b0 < slice ? B - b0 : slice;
        ms_hook_capture cap = {h, hookbuf};
        ms_forward_opts o = {.targets = tg + (size_t)b0 * T, .captures = &cap, .n_captures = 1, .row_invariant = true};
        rc = ms_model_forward(&m, &a, tok + (size_t)b0 * T, nb, T, &o, err);
        if (rc) goto done;
        loss_sum += a.mean_loss * (double)a.n_loss;
        loss_n += a.n_loss;
        for (int b = 0; b < nb; b++)
            for (int t = 0; t + 1 < T; t++) lossbuf[(size_t)b * (T - 1) + t] = a.losses[(size_t)b * T + t];
        if (write_rows(dl, 3, dims_l, b0, nb, a.logits) < 0 || write_rows(dloss, 2, dims_s, b0, nb, lossbuf) < 0 ||
            write_rows(dh, 3, dims_h, b0, nb, hookbuf) < 0) {
            rc = ms_err_set(err, MS_ERR_IO, "%s: HDF5 write failed", out);
            goto done;
        }
    }
    char mean[64];
    snprintf(mean, sizeof mean, "%.9g", loss_n ? loss_sum / (double)loss_n : 0.0);
    char hn[96];
    ms_hook_name(h, hn, sizeof hn);
    if (ms_h5_attr_write_ascii(f, "hook", hn) < 0 || ms_h5_attr_write_ascii(f, "model_dir", mdir) < 0 ||
        ms_h5_attr_write_ascii(f, "mean_loss", mean) < 0 ||
        ms_h5_attr_write_ascii(f, "tool", "monosem " MS_VERSION_STRING) < 0) {
        rc = ms_err_set(err, MS_ERR_IO, "%s: cannot write attributes", out);
        goto done;
    }
    ms_h5_dataset_close(dl), ms_h5_dataset_close(dloss), ms_h5_dataset_close(dh);
    dl = dloss = dh = -1;
    int cl = ms_h5_file_close(f);
    f = -1;
    if (cl < 0 || rename(tmp, out) != 0) {
        rc = ms_err_set(err, MS_ERR_IO, "%s: cannot finish the file: %s", out,
                        cl < 0 ? ms_create_error(tmp) : strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
    ms_log("forward: %d contexts x %d tokens -> %s (logits, loss, %s); mean loss %s", B, T, out, hn, mean);
done:
    ms_h5_dataset_close(dl);
    ms_h5_dataset_close(dloss);
    ms_h5_dataset_close(dh);
    if (f >= 0) ms_h5_file_close(f);
    if (tmp[0]) unlink(tmp);
    free(tok);
    free(tg);
    free(hookbuf);
    free(lossbuf);
    ms_model_acts_free(&a);
    ms_model_free(&m);
    return rc;
}
