/* tests/model/model_driver.c: runs the C forward for the NumPy reference test and writes raw
 * float32 outputs (logits, next-token losses, one hooked activation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../libmodel/kernels.h"
#include "monosem/model.h"

static int write_raw(const char *prefix, const char *ext, const float *x, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.%s", prefix, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(x, sizeof(float), n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "error: %s: cannot write\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: model_driver MODEL_DIR TOKENS_TXT OUT_PREFIX HOOK [--zero HOOK] [--naive] [--stop]\n");
        return 2;
    }
    const char *zero = NULL;
    bool stop = false;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--zero") == 0 && i + 1 < argc) zero = argv[++i];
        else if (strcmp(argv[i], "--naive") == 0) ms_kernels_set_naive(1);
        else if (strcmp(argv[i], "--stop") == 0) stop = true;
    }
    ms_err err = {0};
    ms_model m;
    ms_model_acts a = {0};
    int32_t *tok = NULL, *tg = NULL;
    float *hookbuf = NULL, *loss = NULL;
    int B, T, rc = 1;
    ms_hook h, hz;
    if (ms_model_load(&m, argv[1], &err)) goto fail_nomodel;
    if (ms_tokens_load_text(argv[2], &tok, &B, &T, &err)) goto fail;
    if (ms_hook_parse(&h, argv[4], &m.cfg, &err)) goto fail;
    if (zero && ms_hook_parse(&hz, zero, &m.cfg, &err)) goto fail;
    if (ms_model_acts_init(&a, &m.cfg, B, T, stop ? MS_ACTS_NO_LOGITS : 0, &err)) goto fail;
    int d = ms_hook_dim(&m.cfg, h);
    hookbuf = malloc((size_t)B * T * d * sizeof(float));
    tg = malloc((size_t)B * T * sizeof *tg);
    loss = malloc((size_t)B * T * sizeof *loss);
    if (!hookbuf || !tg || !loss) goto fail;
    ms_model_next_targets(tg, tok, B, T);
    ms_hook_capture cap = {h, hookbuf};
    ms_hook_replace rep = {hz, ms_hook_fn_zero, NULL};
    ms_forward_opts o = {.targets = stop ? NULL : tg, .stop_after = stop ? &h : NULL, .captures = &cap,
                         .n_captures = 1, .replaces = &rep, .n_replaces = zero ? 1 : 0};
    if (ms_model_forward(&m, &a, tok, B, T, &o, &err)) goto fail;
    rc = write_raw(argv[3], "hook", hookbuf, (size_t)B * T * d);
    if (!stop) {
        /* (B,T-1): the last position has no target */
        for (int b = 0; b < B; b++)
            for (int t = 0; t + 1 < T; t++) loss[(size_t)b * (T - 1) + t] = a.losses[(size_t)b * T + t];
        rc |= write_raw(argv[3], "logits", a.logits, (size_t)B * T * m.cfg.d_vocab);
        rc |= write_raw(argv[3], "loss", loss, (size_t)B * (T - 1));
        printf("mean_loss %.9g\n", a.mean_loss);
    }
    goto done;
fail:
    ms_model_free(&m);
fail_nomodel:
    fprintf(stderr, "error: %s\n", err.msg[0] ? err.msg : "out of memory");
    free(tok);
    free(tg);
    free(loss);
    free(hookbuf);
    ms_model_acts_free(&a);
    return 1;
done:
    free(tok);
    free(tg);
    free(loss);
    free(hookbuf);
    ms_model_acts_free(&a);
    ms_model_free(&m);
    return rc;
}
