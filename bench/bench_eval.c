/* bench/bench_eval.c: `monosem eval` tokens/s on the paper-sized model against the forward's
 * rate through the unembedding with the loss (what bench_forward measures) on the same model,
 * batch and threads. Eval = one clean forward + a zero-ablated tail + per SAE a spliced tail
 * (forwards resumed at the hook) + the SAE itself; printed: the whole pass with one SAE, and
 * the marginal cost of an SAE (its spliced tail + encode/decode), each as a ratio to the forward.
 * usage: mpirun -n 1 bench_eval [--B 32] [--T 128] [--vocab 50257] [--d_sae 2048] [--batches 4]
 *                               [--reps 3] [--dir DIR]
 * Threads: OPENBLAS_NUM_THREADS (default: OpenBLAS's own, all cores). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "eval.h"

static void die(const ms_err *e)
{
    fprintf(stderr, "bench_eval: %s\n", e->msg);
    exit(1);
}

static double timer(const ms_runrec *r, const char *name)
{
    for (int i = 0; i < r->n_timers; i++)
        if (!strcmp(r->timers[i].name, name)) return r->timers[i].seconds;
    return 0;
}

int main(int argc, char **argv)
{
    int B = 32, T = 128, V = 50257, d_sae = 2048, batches = 4, reps = 3;
    const char *dir = "/tmp/monosem_bench_eval";
    ms_err err = {0};
    app_ctx app;
    memset(&app, 0, sizeof app);
    if (ms_comm_init(&app.comm, &argc, &argv, &err)) die(&err);
    ms_log_init(app.comm.rank);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--B")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--T")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--vocab")) V = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--d_sae")) d_sae = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batches")) batches = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
    }
    /* the model, held-out tokens and two random relu SAEs on disk, as a job would have them */
    ms_model_config mc = {.n_layers = 1, .d_model = 128, .d_mlp = 512, .n_heads = 4, .d_head = 32,
                          .n_ctx = T > 128 ? T : 128, .d_vocab = V, .act_fn = MS_ACT_RELU,
                          .normalization = MS_NORM_LN, .eps = 1e-5f};
    ms_model m;
    char mdir[4096], tdir[4096], sdir[2][4096], lens[4200], job[4200];
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    snprintf(tdir, sizeof tdir, "%s/tokens", dir);
    if (ms_model_init(&m, &mc, &err)) die(&err);
    ms_model_init_random(&m, 1234, 0.05f);
    if (ms_model_save(&m, mdir, &err)) die(&err);
    const int64_t n_tok = (int64_t)batches * B * T + 1;
    int32_t *ids = malloc((size_t)n_tok * sizeof *ids);
    uint64_t s = 42;
    for (int64_t i = 0; i < n_tok; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)V);
    }
    if (ms_mkdirs(tdir, &err)) die(&err);
    char shard[4200];
    snprintf(shard, sizeof shard, "%s/heldout-000000.bin", tdir);
    ms_tokshard_writer *w;
    if (ms_tokshard_create(&w, shard, V <= 65536 ? 2 : 4, &err) ||
        ms_tokshard_append(w, ids, (size_t)n_tok, &err) || ms_tokshard_commit(w, &err))
        die(&err);
    char man[1024];
    int n = snprintf(man, sizeof man,
                     "{\"version\": 1, \"tokenizer_sha256\": \"bench\", \"vocab_size\": %d, \"eot\": %d, "
                     "\"train\": [], \"heldout\": [{\"file\": \"heldout-000000.bin\", \"tokens\": %lld, "
                     "\"docs\": 1}]}\n",
                     V, V - 1, (long long)n_tok);
    snprintf(shard, sizeof shard, "%s/manifest.json", tdir);
    if (ms_file_write_atomic(shard, man, (size_t)n, &err)) die(&err);
    /* a sample of the hook's activations, to give the random SAEs a trained SAE's sparsity */
    enum { NS = 256 };
    float *xs = malloc((size_t)B * T * mc.d_mlp * sizeof *xs);
    {
        ms_model_acts a0;
        ms_hook h = {0, MS_HOOK_MLP_POST};
        ms_hook_capture cap = {h, xs};
        ms_forward_opts o0 = {.stop_after = &h, .captures = &cap, .n_captures = 1};
        if (ms_model_acts_init(&a0, &mc, B, T, 0, &err) || ms_model_forward(&m, &a0, ids, B, T, &o0, &err))
            die(&err);
        ms_model_acts_free(&a0);
    }
    for (int k = 0; k < 2; k++) {
        snprintf(sdir[k], sizeof sdir[k], "%s/sae%d", dir, k);
        snprintf(lens, sizeof lens, "%s/saelens", sdir[k]);
        ms_sae_hparams hp = {.arch = MS_SAE_RELU_L1, .d_in = 512, .d_sae = d_sae, .max_batch = 16,
                             .lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .adam_eps = 1e-8, .steps = 1};
        ms_sae sae;
        ms_rng rng;
        ms_rng_init(&rng, 9, (uint64_t)k);
        if (ms_sae_init(&sae, &hp, &err)) die(&err);
        ms_sae_init_params(&sae, &rng);
        /* b_enc_j = minus the 99th percentile of feature j's pre-activation on the sample, so
         * about 1% of features fire per token (the demo's trained SAE: L0 15 of 2048) */
        float *z = malloc(NS * sizeof *z);
        for (int j = 0; j < d_sae; j++) {
            for (int r = 0; r < NS; r++) {
                const float *xr = xs + (size_t)r * 16 * 512; /* spread over the batch */
                double acc = 0;
                for (int i = 0; i < 512; i++) acc += (double)xr[i] * sae.p.W_enc[(size_t)i * d_sae + j];
                z[r] = (float)acc;
            }
            for (int a = 1; a < NS; a++) /* insertion sort: NS is small */
                for (int b = a; b > 0 && z[b] < z[b - 1]; b--) {
                    float t = z[b];
                    z[b] = z[b - 1], z[b - 1] = t;
                }
            sae.p.b_enc[j] = -z[NS * 99 / 100];
        }
        free(z);
        ms_saelens_meta meta = {.hook_name = "blocks.0.mlp.hook_post", .context_size = T};
        if (ms_saelens_save(&sae, lens, NULL, &meta, &err)) die(&err);
        ms_sae_free(&sae);
    }
    snprintf(job, sizeof job, "%s/job.yaml", dir);
    char text[8192];
    n = snprintf(text, sizeof text,
                 "run: {name: bench, out_dir: %s/run, log_every_s: 1000}\n"
                 "corpus: {context: %d, token_dir: %s}\nmodel: {dir: %s}\n"
                 "sae: {out_dir: %s}\ngenerate: {sample_per_context: %d}\n"
                 "eval: {tokens: %lld, batch: %d}\n",
                 dir, T, tdir, mdir, sdir[0], T, (long long)(n_tok - 1), B);
    if (ms_config_parse(&app.cfg, job, text, (size_t)n, NULL, 0, NULL, &err)) die(&err);
    app.have_cfg = true;

    /* the forward through the unembedding with the loss (bench_forward's o_loss), timed in
     * every round next to the evals so both see the same background load; best of all */
    ms_model_acts a;
    if (ms_model_acts_init(&a, &mc, B, T, 0, &err)) die(&err);
    int32_t *tg = malloc((size_t)B * T * sizeof *tg);
    ms_model_next_targets(tg, ids, B, T);
    ms_forward_opts o = {.targets = tg};
    double t_fwd = 1e30;
    const double N = (double)(n_tok - 1);

    /* eval with one SAE and with two (best of reps each) */
    app_job_sae js[2];
    memset(js, 0, sizeof js);
    for (int k = 0; k < 2; k++) {
        snprintf(js[k].name, sizeof js[k].name, "sae%d", k);
        js[k].dir = sdir[k];
        js[k].model_dir = mdir;
        js[k].activations = (char *)"";
    }
    double best[2] = {1e30, 1e30}, splice[2] = {1e30, 1e30}, clean = 1e30, zero = 1e30, sae_t = 1e30;
    for (int r = 0; r < reps; r++)
        for (int ns = 0; ns <= 2; ns++) {
            if (ns == 0) {
                for (int k = 0; k < 3; k++) { /* the first is a warm-up in round 0 */
                    double t0 = bench_now();
                    if (ms_model_forward(&m, &a, ids, B, T, &o, &err)) die(&err);
                    double dt = bench_now() - t0;
                    if ((r > 0 || k > 0) && dt < t_fwd) t_fwd = dt;
                }
                continue;
            }
            ms_runrec_init(&app.rec, "eval");
            double t0 = bench_now();
            if (app_eval_run(&app, js, ns, &err)) die(&err);
            double dt = bench_now() - t0;
            if (dt < best[ns - 1]) best[ns - 1] = dt;
            double sp = timer(&app.rec, "spliced_forward") / ns;
            if (sp < splice[ns - 1]) splice[ns - 1] = sp;
            if (ns == 1) {
                if (timer(&app.rec, "clean_forward") < clean) clean = timer(&app.rec, "clean_forward");
                if (timer(&app.rec, "zero_ablation") < zero) zero = timer(&app.rec, "zero_ablation");
                if (timer(&app.rec, "sae_encode_decode") < sae_t) sae_t = timer(&app.rec, "sae_encode_decode");
            }
        }
    ms_model_acts_free(&a);
    const double r_fwd = (double)B * T / t_fwd;
    if (app.comm.rank == 0) {
        printf("bench_eval: 1 layer, d_model 128, d_mlp 512, vocab %d, SAE relu %d features at "
               "blocks.0.mlp.hook_post, batch %d x ctx %d, %.0f tokens, %d rank(s), %d OpenBLAS "
               "thread(s), best of %d\n",
               V, d_sae, B, T, N, app.comm.size, openblas_get_num_threads(), reps);
        printf("forward to the loss:        %10.0f tokens/s\n", r_fwd);
        const double steady = N / (clean + zero + splice[0]);
        printf("eval, 1 SAE (in the loop):  %10.0f tokens/s  = %.2fx the forward (clean forward %.2fs, "
               "zero-ablated tail %.2fs, spliced tail %.2fs of which SAE %.2fs)\n",
               steady, steady / r_fwd, clean, zero, splice[0], sae_t);
        printf("eval, 1 SAE (whole run):    %10.0f tokens/s  = %.2fx the forward (with loading the model "
               "and SAE and first-touching the buffers)\n",
               N / best[0], N / best[0] / r_fwd);
        printf("eval, 2 SAEs (whole pass):  %10.0f tokens/s  = %.2fx the forward\n", N / best[1],
               N / best[1] / r_fwd);
        double marg = (best[1] - best[0]) > 0 ? N / (best[1] - best[0]) : 0;
        printf("an SAE's marginal cost:     %10.0f tokens/s  = %.2fx the forward (its spliced tail: "
               "resumed forward + encode/decode + KL; whole-run difference 1 -> 2 SAEs: %.0f tokens/s)\n",
               N / splice[0], N / splice[0] / r_fwd, marg);
    }
    free(ids);
    free(xs);
    free(tg);
    ms_model_free(&m);
    ms_config_free(&app.cfg);
    ms_comm_finalize(&app.comm);
    return 0;
}
