/* `monosem forward MODEL_DIR TOKENS --hook NAME --out out.h5`: run a model on token ids (one
 * context per line) and write /logits (B,T,V), /loss (B,T-1) and /hook (B,T,d) as float32, for
 * people checking a converted checkpoint against their own framework. Rank 0 does the work with
 * the serial HDF5 API; other ranks return at once. */
#include <errno.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "monosem/model.h"

/* logits are B*T*V floats: run the batch in slices of at most this many bytes of logits */
#define FORWARD_LOGITS_BYTES (256u << 20)

static hid_t make_dset(hid_t f, const char *name, int rank, const hsize_t *dims)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    if (sp < 0) return -1;
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    return d;
}

/* Writes rows [b0, b0+nb) of a dataset whose first dimension is the context. */
static herr_t write_rows(hid_t dset, int rank, const hsize_t *dims, hsize_t b0, hsize_t nb, const float *buf)
{
    hsize_t start[3] = {b0, 0, 0}, count[3] = {nb, dims[1], rank > 2 ? dims[2] : 1};
    hsize_t total = nb;
    for (int i = 1; i < rank; i++) total *= dims[i];
    if (total == 0) return 0;
    hid_t fs = H5Dget_space(dset);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (rc >= 0) rc = H5Dwrite(dset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

static herr_t attr_str(hid_t obj, const char *name, const char *val)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(val) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, val);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

ms_status ms_stage_forward(ms_app *app, ms_err *err)
{
    if (app->comm.rank != 0) return MS_OK;
    const char *mdir = ms_app_positional(app, 0), *tpath = ms_app_positional(app, 1);
    const char *hook_name = ms_app_option(app, "hook"), *out = ms_app_option(app, "out");
    const char *batch_opt = ms_app_option(app, "batch");
    if (!mdir || !tpath || !out)
        return ms_err_set(err, MS_ERR_USAGE, "usage: monosem forward MODEL_DIR TOKENS --hook NAME --out out.h5 [--batch N]");
    if (!hook_name) hook_name = "blocks.0.mlp.hook_post";

    ms_model m;
    ms_model_acts a = {0};
    int32_t *tok = NULL, *tg = NULL;
    float *hookbuf = NULL, *lossbuf = NULL;
    hid_t f = -1, dl = -1, dloss = -1, dh = -1;
    char tmp[4096] = "";
    ms_status rc = ms_model_load(&m, mdir, err);
    if (rc) return rc;
    int B, T;
    ms_hook h;
    rc = ms_tokens_load_text(tpath, &tok, &B, &T, err);
    if (rc) goto done;
    if (T > m.cfg.n_ctx) {
        rc = ms_err_set(err, MS_ERR_USAGE, "%s: contexts of %d tokens, but the model's n_ctx is %d", tpath, T,
                        m.cfg.n_ctx);
        goto done;
    }
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tok[i] >= m.cfg.d_vocab) {
            rc = ms_err_set(err, MS_ERR_USAGE, "%s:%zu: token id %d outside the model's vocabulary (d_vocab %d)", tpath,
                            i / (size_t)T + 1, tok[i], m.cfg.d_vocab);
            goto done;
        }
    rc = ms_hook_parse(&h, hook_name, &m.cfg, err);
    if (rc) goto done;
    const int d = ms_hook_dim(&m.cfg, h), V = m.cfg.d_vocab;
    int slice = (int)(FORWARD_LOGITS_BYTES / ((size_t)T * V * sizeof(float)));
    if (slice < 1) slice = 1;
    if (batch_opt) {
        char *e;
        long v = strtol(batch_opt, &e, 10);
        if (*e || v < 1 || v > 1 << 20) {
            rc = ms_err_set(err, MS_ERR_USAGE, "--batch %s: expected a positive integer", batch_opt);
            goto done;
        }
        slice = (int)v;
    }
    if (slice > B) slice = B;
    rc = ms_model_acts_init(&a, &m.cfg, slice, T, 0, err);
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
    hsize_t dims_l[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)V}, dims_s[2] = {(hsize_t)B, (hsize_t)(T - 1)},
            dims_h[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)d};
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0 || (dl = make_dset(f, "logits", 3, dims_l)) < 0 || (dloss = make_dset(f, "loss", 2, dims_s)) < 0 ||
        (dh = make_dset(f, "hook", 3, dims_h)) < 0) {
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
        if (write_rows(dl, 3, dims_l, (hsize_t)b0, (hsize_t)nb, a.logits) < 0 ||
            write_rows(dloss, 2, dims_s, (hsize_t)b0, (hsize_t)nb, lossbuf) < 0 ||
            write_rows(dh, 3, dims_h, (hsize_t)b0, (hsize_t)nb, hookbuf) < 0) {
            rc = ms_err_set(err, MS_ERR_IO, "%s: HDF5 write failed", out);
            goto done;
        }
    }
    char mean[64];
    snprintf(mean, sizeof mean, "%.9g", loss_n ? loss_sum / (double)loss_n : 0.0);
    char hn[96];
    ms_hook_name(h, hn, sizeof hn);
    if (attr_str(f, "hook", hn) < 0 || attr_str(f, "model_dir", mdir) < 0 || attr_str(f, "mean_loss", mean) < 0 ||
        attr_str(f, "tool", "monosem " MS_VERSION_STRING) < 0) {
        rc = ms_err_set(err, MS_ERR_IO, "%s: cannot write attributes", out);
        goto done;
    }
    H5Dclose(dl), H5Dclose(dloss), H5Dclose(dh);
    dl = dloss = dh = -1;
    herr_t cl = H5Fclose(f);
    f = -1;
    if (cl < 0 || rename(tmp, out) != 0) {
        rc = ms_err_set(err, MS_ERR_IO, "%s: cannot finish the file: %s", out,
                        cl < 0 ? ms_create_error(tmp) : strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
    ms_log("forward: %d contexts x %d tokens -> %s (logits, loss, %s); mean loss %s", B, T, out, hn, mean);
done:
    if (dl >= 0) H5Dclose(dl);
    if (dloss >= 0) H5Dclose(dloss);
    if (dh >= 0) H5Dclose(dh);
    if (f >= 0) H5Fclose(f);
    if (tmp[0]) unlink(tmp);
    free(tok);
    free(tg);
    free(hookbuf);
    free(lossbuf);
    ms_model_acts_free(&a);
    ms_model_free(&m);
    return rc;
}
