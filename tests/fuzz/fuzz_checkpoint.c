/* tests/fuzz/fuzz_checkpoint.c: libFuzzer harness for the state files monosem reads back.
 * Byte 0 mod 4 picks: 0 a train-model checkpoint (rest = the file) loaded into a tiny model;
 * 1 a model directory (config.json, "\n@@\n", model.safetensors); 2 a SAELens directory
 * (cfg.json, "\n@@\n", sae_weights.safetensors) loaded into an SAE of the dims it declares;
 * 3 an SAE training checkpoint verified as a resume of a small fixed job would read it.
 * Errors are one line; a loaded checkpoint's state is in range. MS_FUZZ_SEEDS=DIR writes one
 * valid input of each of the first three kinds there (the committed seeds; the SAE checkpoint
 * seed comes from `monosem train` on make_synth.py --rows 400 --d 4 --feats 8 --seed 1 with
 * sae_job below, stopped at step 5). */
#include "fuzz_util.h"
#include "monosem/model.h"
#include "monosem/sae.h"
#include "sae_train.h" /* the trainer's checkpoint reader (apps) */

static const ms_model_config tiny = {.n_layers = 1, .d_model = 4, .d_mlp = 8, .n_heads = 1, .d_head = 4,
                                     .n_ctx = 4, .d_vocab = 8, .act_fn = MS_ACT_RELU,
                                     .normalization = MS_NORM_LN, .eps = 1e-5f};

/* Bytes of a file, prefixed by the mode byte (seed writing). */
static void put_file(FILE *o, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (ms_file_read_all(path, &text, &len, NULL) != MS_OK) abort();
    fwrite(text, 1, len, o);
    free(text);
}

static void write_seeds(const char *dir)
{
    ms_model m;
    ms_err err = {0};
    if (ms_model_init(&m, &tiny, &err)) abort();
    ms_model_init_random(&m, 1, 0.02f);
    float *am = calloc(m.n_params, sizeof(float)), *av = calloc(m.n_params, sizeof(float));
    char p[512], q[512];
    ms_train_ckpt_info info = {.step = 3, .data_pos = 24, .n_ranks = 2, .fingerprint = "0123456789abcdef",
                               .job_keys = "run.seed=1\ntrain_model.lr=0.001\n"};
    snprintf(p, sizeof p, "%s/ckpt.safetensors", fz_tmpdir());
    if (ms_train_checkpoint_save(p, &m, am, av, &info, &err)) abort();
    snprintf(q, sizeof q, "%s/seed_train_ckpt", dir);
    FILE *o = fopen(q, "wb");
    fputc(0, o), put_file(o, p), fclose(o);
    snprintf(p, sizeof p, "%s/model", fz_tmpdir());
    if (ms_model_save(&m, p, &err)) abort();
    snprintf(q, sizeof q, "%s/seed_model_dir", dir);
    o = fopen(q, "wb");
    fputc(1, o);
    snprintf(p, sizeof p, "%s/model/config.json", fz_tmpdir()), put_file(o, p);
    fwrite("\n@@\n", 1, 4, o);
    snprintf(p, sizeof p, "%s/model/model.safetensors", fz_tmpdir()), put_file(o, p);
    fclose(o);
    ms_config cfg;
    if (ms_config_init_defaults(&cfg, &err)) abort();
    ms_sae_hparams hp;
    app_sae_hparams_from_config(&hp, &cfg, 4, 4);
    hp.d_sae = 8;
    ms_sae sae;
    ms_rng rng;
    ms_rng_init(&rng, 1, 2);
    if (ms_sae_init(&sae, &hp, &err)) abort();
    ms_sae_init_params(&sae, &rng);
    snprintf(p, sizeof p, "%s/saelens", fz_tmpdir());
    ms_saelens_meta lm = {.hook_name = "blocks.0.mlp.hook_post"};
    if (ms_saelens_save(&sae, p, NULL, &lm, &err)) abort();
    snprintf(q, sizeof q, "%s/seed_saelens_dir", dir);
    o = fopen(q, "wb");
    fputc(2, o);
    snprintf(p, sizeof p, "%s/saelens/cfg.json", fz_tmpdir()), put_file(o, p);
    fwrite("\n@@\n", 1, 4, o);
    snprintf(p, sizeof p, "%s/saelens/sae_weights.safetensors", fz_tmpdir()), put_file(o, p);
    fclose(o);
    ms_sae_free(&sae);
    ms_config_free(&cfg);
    ms_model_free(&m);
    free(am);
    free(av);
}

static void fuzz_train_ckpt(const uint8_t *data, size_t size)
{
    static ms_model m;
    static float *am, *av;
    ms_err err = {0};
    if (!am) {
        if (ms_model_init(&m, &tiny, &err)) abort();
        am = calloc(m.n_params, sizeof(float));
        av = calloc(m.n_params, sizeof(float));
    }
    const char *p = fz_write(0, "ckpt.safetensors", data, size);
    ms_train_ckpt_info info;
    ms_status st = ms_train_checkpoint_load(p, &m, am, av, &info, &err);
    fz_check_err(st, &err);
    if (st == MS_OK && (info.step < 0 || info.data_pos < 0 || info.n_ranks < 1 || strlen(info.fingerprint) != 16))
        abort(); /* state read back must be in range */
}

static void fuzz_model_dir(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(data, size, &a, &na, &b, &nb);
    fz_write(0, "config.json", a, na);
    fz_write(1, "model.safetensors", b, nb);
    ms_model m;
    memset(&m, 0, sizeof m);
    ms_err err = {0};
    ms_model_config c;
    char cp[300];
    snprintf(cp, sizeof cp, "%s/config.json", fz_tmpdir());
    /* the config alone first: a huge declared model must be refused before allocating it */
    ms_status st = ms_model_config_load(&c, cp, &err);
    fz_check_err(st, &err);
    if (st != MS_OK || (double)c.d_vocab * c.d_model + (double)c.n_layers * c.d_model * c.d_mlp * 2 > 1e6) return;
    st = ms_model_load(&m, fz_tmpdir(), &err);
    fz_check_err(st, &err);
    ms_model_free(&m);
}

static void fuzz_saelens_dir(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(data, size, &a, &na, &b, &nb);
    fz_write(0, "cfg.json", a, na);
    fz_write(1, "sae_weights.safetensors", b, nb);
    int64_t din = 0, dsae = 0;
    ms_err err = {0};
    ms_status st = ms_saelens_dims(fz_tmpdir(), &din, &dsae, &err);
    fz_check_err(st, &err);
    if (st != MS_OK) return;
    if (din < 1 || dsae < 1) abort();
    if (din * dsae > 4096 || din > 4096 || dsae > 4096) return; /* keep each run small */
    static ms_config cfg;
    if (!cfg.path && ms_config_init_defaults(&cfg, &err)) abort();
    ms_sae_hparams hp;
    app_sae_hparams_from_config(&hp, &cfg, din, 4);
    hp.d_sae = dsae;
    if (hp.k > dsae) hp.k = dsae;
    ms_sae sae;
    if (ms_sae_init(&sae, &hp, &err) != MS_OK) return;
    st = ms_saelens_load(&sae, fz_tmpdir(), &err);
    fz_check_err(st, &err);
    ms_sae_free(&sae);
}

/* The job and the activations' identity the SAE checkpoint seed was written with. */
static const char sae_job[] = "run: {seed: 5}\nsae: {d_sae: 8, batch: 20, steps: 10, checkpoint_every: 5, "
                              "median_samples: 50, shuffle_buffer: 100, resample: {at: [3], window: 1, inputs: 40}}\n";

static void fuzz_sae_ckpt(const uint8_t *data, size_t size)
{
    static ms_config cfg;
    static ms_actmeta am;
    ms_err err = {0};
    if (!cfg.path) {
        if (ms_config_parse(&cfg, "sae_job", sae_job, sizeof sae_job - 1, NULL, 0, NULL, &err)) abort();
        am = (ms_actmeta){.n_rows = 400, .d = 4, .n_contexts = 25, .context = 16, .n_shards = 4,
                          .dtype = MS_DTYPE_F16, .seed = 1};
        snprintf(am.hook, sizeof am.hook, "synthetic.hook");
        memset(am.model_sha256, '0', 64);
        memset(am.config_hash, '0', 16);
    }
    const char *p = fz_write(0, "sae_ckpt.safetensors", data, size);
    fz_check_err(app_sae_checkpoint_verify(p, &cfg, &am, &err), &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int seeded;
    const char *sd = getenv("MS_FUZZ_SEEDS");
    if (sd && !seeded++) write_seeds(sd);
    if (size < 1) return 0;
    switch (data[0] % 4) {
    case 0: fuzz_train_ckpt(data + 1, size - 1); break;
    case 1: fuzz_model_dir(data + 1, size - 1); break;
    case 2: fuzz_saelens_dir(data + 1, size - 1); break;
    default: fuzz_sae_ckpt(data + 1, size - 1); break;
    }
    return 0;
}
