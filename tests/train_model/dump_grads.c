/* Test helper: one forward + backward of a small random model; writes the parameters, the
 * gradients ("grad.<name>") and the tokens/targets to a safetensors file for the NumPy
 * reference (ref_grads.py). Usage: dump_grads OUT.safetensors ACT NORM [LAYERS]. */
#include "monosem/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s OUT.safetensors relu|gelu|gelu_new LN|LNPre|none [LAYERS]\n", argv[0]);
        return 2;
    }
    int act = !strcmp(argv[2], "gelu") ? MS_ACT_GELU : !strcmp(argv[2], "gelu_new") ? MS_ACT_GELU_NEW : MS_ACT_RELU;
    int norm = !strcmp(argv[3], "LNPre") ? MS_NORM_LNPRE : !strcmp(argv[3], "none") ? MS_NORM_NONE : MS_NORM_LN;
    int layers = argc > 4 ? atoi(argv[4]) : 1;
    ms_model_config c = {.n_layers = layers, .d_model = 16, .d_mlp = 24, .n_heads = 2, .d_head = 5,
                         .n_ctx = 12, .d_vocab = 29, .act_fn = act, .normalization = norm, .eps = 1e-5f};
    enum { B = 3, T = 9 };
    ms_err err = {0};
    ms_model m;
    ms_model_acts a;
    ms_model_backbuf bb;
    ms_model_params gv;
    if (ms_model_init(&m, &c, &err) || ms_model_acts_init(&a, &c, B, T, 0, &err) ||
        ms_model_backbuf_init(&bb, &c, B, T, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    ms_model_init_random(&m, 77, 0.3f);
    /* perturb LayerNorm weights and all biases away from 1 and 0 */
    uint64_t s = 5;
    for (int i = 0; i < m.n_tensors; i++) {
        const char *leaf = strrchr(m.tensors[i].name, '.') + 1;
        if (leaf[0] == 'b' || leaf[0] == 'w')
            for (size_t k = 0; k < m.tensors[i].numel; k++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                m.params[m.tensors[i].offset + k] += 0.4f * (float)((double)(s >> 11) * 0x1p-53 - 0.5);
            }
    }
    int32_t tokens[B * T], targets[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (int32_t)((i * 13 + 5) % c.d_vocab);
    ms_model_next_targets(targets, tokens, B, T);
    targets[4] = -1;
    float *g = calloc(m.n_params, sizeof(float));
    if (ms_model_params_bind(&c, g, &gv, &err)) return 1;
    ms_forward_opts o = {.targets = targets};
    if (ms_model_forward(&m, &a, tokens, B, T, &o, &err) ||
        ms_model_backward(&m, &a, &bb, &gv, tokens, targets, 1.0f / (float)a.n_loss, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float loss = (float)a.mean_loss;
    ms_safetensors_item *items = calloc((size_t)2 * m.n_tensors + 3, sizeof *items);
    char (*names)[80] = calloc((size_t)m.n_tensors, sizeof *names);
    int n = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < m.n_tensors; i++) {
            const ms_model_tensor *t = &m.tensors[i];
            ms_safetensors_item *it = &items[n++];
            if (k) snprintf(names[i], sizeof names[i], "grad.%s", t->name);
            it->name = k ? names[i] : t->name;
            it->dtype = MS_SAFETENSORS_F32;
            it->ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++) it->shape[d] = t->shape[d];
            it->data = (k ? g : m.params) + t->offset;
        }
    items[n++] = (ms_safetensors_item){.name = "tokens", .dtype = MS_SAFETENSORS_I32, .ndim = 2, .shape = {B, T}, .data = tokens};
    items[n++] = (ms_safetensors_item){.name = "targets", .dtype = MS_SAFETENSORS_I32, .ndim = 2, .shape = {B, T}, .data = targets};
    items[n++] = (ms_safetensors_item){.name = "loss", .dtype = MS_SAFETENSORS_F32, .ndim = 1, .shape = {1}, .data = &loss};
    char *cj = ms_model_config_json(&c);
    const char *meta[] = {"config", cj};
    if (ms_safetensors_write(argv[1], items, n, meta, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    free(cj);
    free(items);
    free(names);
    free(g);
    ms_model_params_unbind(&gv);
    ms_model_backbuf_free(&bb);
    ms_model_acts_free(&a);
    ms_model_free(&m);
    return 0;
}
