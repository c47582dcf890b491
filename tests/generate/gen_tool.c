/* tests/generate/gen_tool.c: helpers for the generation tests.
 *   gen_tool model DIR N_LAYERS D_MODEL D_MLP N_HEADS N_CTX D_VOCAB ACT SEED
 *       writes a random model with the model writer (config.json + model.safetensors)
 *   gen_tool check ACTS.h5 MODEL_DIR TOKEN_DIR
 *       recomputes every row of a complete activations file with the C forward (one context
 *       at a time, the full forward with a capture: a different path from generation's batched
 *       stop-at-hook forward) and checks /tokens against the token shards and /index against
 *       the sampling contract (K distinct ascending positions per context, rows c*K..c*K+K-1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monosem/model.h"

static int make_model(char **a)
{
    ms_model_config c = {.n_layers = atoi(a[1]), .d_model = atoi(a[2]), .d_mlp = atoi(a[3]),
                         .n_heads = atoi(a[4]), .n_ctx = atoi(a[5]), .d_vocab = atoi(a[6]),
                         .normalization = MS_NORM_LN, .eps = 1e-5f};
    c.d_head = c.d_model / c.n_heads;
    c.act_fn = strcmp(a[7], "gelu") == 0 ? MS_ACT_GELU : strcmp(a[7], "gelu_new") == 0 ? MS_ACT_GELU_NEW : MS_ACT_RELU;
    ms_err err = {0};
    ms_model m;
    if (ms_model_config_check(&c, "gen_tool", &err) || ms_model_init(&m, &c, &err)) {
        fprintf(stderr, "gen_tool: %s\n", err.msg);
        return 1;
    }
    ms_model_init_random(&m, strtoull(a[8], NULL, 10), 0.2f);
    /* non-trivial LayerNorm and biases so every parameter matters */
    for (size_t i = 0; i < m.n_params; i++)
        if (m.params[i] == 0.0f) m.params[i] = 0.05f * (float)((i * 2654435761u) % 97) / 97.0f - 0.025f;
    int rc = ms_model_save(&m, a[0], &err) ? 1 : 0;
    if (rc) fprintf(stderr, "gen_tool: %s\n", err.msg);
    ms_model_free(&m);
    return rc;
}

static int check(const char *acts_path, const char *model_dir, const char *token_dir)
{
    ms_err err = {0};
    ms_actfile *f = NULL;
    ms_actmeta meta;
    ms_model m;
    ms_tokset ts = {0};
    if (ms_actfile_open(&f, acts_path, &meta, &err) || ms_model_load(&m, model_dir, &err) ||
        ms_tokset_open(&ts, token_dir, "train", &err)) {
        fprintf(stderr, "gen_tool check: %s\n", err.msg);
        return 1;
    }
    ms_hook h;
    if (ms_hook_parse(&h, meta.hook, &m.cfg, &err)) {
        fprintf(stderr, "gen_tool check: %s\n", err.msg);
        return 1;
    }
    const int T = (int)meta.context, d = ms_hook_dim(&m.cfg, h);
    const int64_t K = meta.n_rows / meta.n_contexts;
    if (K * meta.n_contexts != meta.n_rows || d != meta.d) {
        fprintf(stderr, "gen_tool check: N=%lld not contexts*K or d %lld != hook width %d\n",
                (long long)meta.n_rows, (long long)meta.d, d);
        return 1;
    }
    ms_model_acts a;
    if (ms_model_acts_init(&a, &m.cfg, 1, T, 0, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    float *cap = malloc((size_t)T * d * sizeof *cap), *rows = malloc((size_t)K * d * sizeof *rows);
    int32_t *tok = malloc((size_t)T * sizeof *tok), *tok2 = malloc((size_t)T * sizeof *tok2),
            *idx = malloc((size_t)K * 2 * sizeof *idx);
    if (!cap || !rows || !tok || !tok2 || !idx) return fprintf(stderr, "out of memory\n"), 1;
    ms_hook_capture hc = {h, cap};
    ms_forward_opts o = {.captures = &hc, .n_captures = 1};
    double max_rel = 0;
    int64_t bad = 0;
    const double tol = meta.dtype == MS_DTYPE_F16 ? 1.0 / 1024 : 1e-5; /* half: 2^-11 rounding */
    for (int64_t c = 0; c < meta.n_contexts; c++) {
        if (ms_actfile_read_tokens(f, c, 1, tok, &err) || ms_tokset_context(&ts, c, T, false, tok2, &err) ||
            ms_actfile_read(f, c * K, K, rows, &err) || ms_actfile_read_index(f, c * K, K, idx, &err))
            return fprintf(stderr, "gen_tool check: %s\n", err.msg), 1;
        if (memcmp(tok, tok2, (size_t)T * sizeof *tok) != 0) {
            fprintf(stderr, "FAIL: /tokens[%lld] differs from the corpus context\n", (long long)c);
            return 1;
        }
        if (ms_model_forward(&m, &a, tok, 1, T, &o, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        for (int64_t k = 0; k < K; k++) {
            int32_t cc = idx[2 * k], p = idx[2 * k + 1];
            if (cc != c || p < 0 || p >= T || (k > 0 && p <= idx[2 * k - 1])) {
                fprintf(stderr, "FAIL: /index row %lld = (%d,%d): expected context %lld, positions ascending in [0,%d)\n",
                        (long long)(c * K + k), cc, p, (long long)c, T);
                return 1;
            }
            for (int j = 0; j < d; j++) {
                double want = cap[(size_t)p * d + j], got = rows[k * d + j];
                double e = fabs(got - want) / (fabs(want) + 1e-3);
                if (e > max_rel) max_rel = e;
                if (!(e <= tol) && bad++ < 5)
                    fprintf(stderr, "FAIL: row %lld (ctx %lld pos %d) dim %d: file %.7g, forward %.7g\n",
                            (long long)(c * K + k), (long long)c, p, j, got, want);
            }
        }
    }
    printf("gen_tool check: %lld contexts, %lld rows x %d, max rel err %.3g (tolerance %.3g), %lld bad\n",
           (long long)meta.n_contexts, (long long)meta.n_rows, d, max_rel, tol, (long long)bad);
    free(cap), free(rows), free(tok), free(tok2), free(idx);
    ms_model_acts_free(&a);
    ms_model_free(&m);
    ms_tokset_close(&ts);
    ms_actfile_close(f);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 11 && strcmp(argv[1], "model") == 0) return make_model(argv + 2);
    if (argc == 5 && strcmp(argv[1], "check") == 0) return check(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: gen_tool model DIR N_LAYERS D_MODEL D_MLP N_HEADS N_CTX D_VOCAB ACT SEED\n"
                    "       gen_tool check ACTS.h5 MODEL_DIR TOKEN_DIR\n");
    return 2;
}
