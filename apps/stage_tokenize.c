/* `monosem tokenize job.yaml`: the corpus into train/heldout token shards once, across ranks. */
#include "app.h"
#include "monosem/model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ms_status encode_cb(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n,
                           size_t *cap, ms_err *err)
{
    return ms_tokenizer_encode(ctx, text, len, ids, n, cap, err);
}

ms_status app_stage_tokenize(app_ctx *app, ms_err *err)
{
    const ms_config *cfg = &app->cfg;
    const ms_comm *comm = &app->comm;
    const char *dir = cfg->corpus.token_dir;
    char **paths = NULL;
    int n_paths = 0;
    ms_tokenizer *tok = NULL;
    int64_t *stats = NULL, n_chunks = 0;
    char tok_sha[65] = "", fp[17] = "";
    double t0 = ms_time_now();

    ms_status st = ms_corpus_expand((const char *const *)cfg->corpus.paths, cfg->corpus.n_paths,
                                    &paths, &n_paths, err);
    if (st == MS_OK) st = ms_tokenizer_load(&tok, cfg->tokenizer.vocab, cfg->tokenizer.merges, err);
    if (st == MS_OK)
        st = ms_tokenizer_files_sha256(cfg->tokenizer.vocab, cfg->tokenizer.merges, tok_sha, err);
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) goto done;

    ms_tokenize_job job = {
        .paths = paths,
        .n_paths = n_paths,
        .doc = {.format = cfg->corpus.format,
                .delimiter = cfg->corpus.delimiter,
                .text_field = cfg->corpus.text_field,
                .eot = ms_tokenizer_eot(tok)},
        .heldout_fraction = cfg->corpus.heldout_fraction,
        .seed = (uint64_t)cfg->run.seed,
        /* ~4 bytes of English text per BPE token: shards of about corpus.shard_tokens */
        .chunk_bytes = cfg->corpus.shard_tokens > 0 ? 4 * cfg->corpus.shard_tokens : (int64_t)1 << 26,
        .out_dir = dir,
        .eot = ms_tokenizer_eot(tok),
        .vocab_size = ms_tokenizer_vocab_size(tok),
        .encode = encode_cb,
        .encode_ctx = tok,
    };
    ms_corpus_fingerprint(&job, tok_sha, fp);

    /* Up to date? Rank 0 decides, everyone follows. */
    int32_t skip = 0;
    if (comm->rank == 0 && !app_flag(app, "force")) {
        char old[17];
        skip = ms_corpus_manifest_fingerprint(dir, old) && strcmp(old, fp) == 0;
    }
    st = ms_comm_bcast(comm, &skip, sizeof skip, 0, err);
    if (st != MS_OK) goto done;
    if (skip) {
        ms_log("tokenize: %s is up to date (fingerprint %s); --force to redo", dir, fp);
        ms_runrec_fact(&app->rec, "tokenize.skipped", "up to date (fingerprint %s)", fp);
        goto done;
    }

    /* The old manifest goes first so a crash never leaves it describing half-rewritten shards. */
    if (comm->rank == 0) {
        st = ms_mkdirs(dir, err);
        char *mp = ms_path_join(dir, MS_TOKENS_MANIFEST);
        if (mp) unlink(mp);
        free(mp);
    }
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) goto done;

    ms_log("tokenize: %d file(s) -> %s on %d rank(s) (vocab %d, heldout %.3g)", n_paths, dir,
           comm->size, job.vocab_size, job.heldout_fraction);
    st = ms_corpus_tokenize_part(&job, comm->rank, comm->size, &stats, &n_chunks, err);
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) goto done;

    /* Every rank scanned the same documents, so chunk counts must match. */
    double mn, avg, mx;
    ms_comm_minavgmax(comm, (double)n_chunks, &mn, &avg, &mx);
    if (mn != mx) {
        st = ms_err_set(err, MS_ERR_STATE, "tokenize: ranks disagree on the chunk count (%.0f..%.0f): "
                        "did the corpus change while tokenizing?", mn, mx);
        goto done;
    }
    st = ms_comm_allreduce_i64(comm, stats, (size_t)n_chunks * MS_CHUNK_STATS, err);
    if (st != MS_OK) goto done;
    int64_t tot[4] = {0, 0, 0, 0};
    for (int64_t c = 0; c < n_chunks; c++)
        for (int k = 0; k < 4; k++) tot[k] += stats[c * MS_CHUNK_STATS + k];
    /* nothing to train on is an error, not an empty manifest (every document is one
     * <|endoftext|> then its text: tokens == docs means only empty documents) */
    if (tot[1] + tot[3] == 0)
        st = ms_err_set(err, MS_ERR_FORMAT, "tokenize: corpus.paths (%d file(s), first %s) hold no document with text: "
                        "the train split would be empty", n_paths, n_paths ? paths[0] : "-");
    else if (tot[1] == 0)
        st = ms_err_set(err, MS_ERR_FORMAT, "tokenize: all %" PRId64 " document(s) were drawn into the held-out "
                        "split (corpus.heldout_fraction %.3g): the train split is empty; add documents "
                        "(corpus.delimiter splits a file) or lower corpus.heldout_fraction",
                        tot[3], job.heldout_fraction);
    else if (tot[0] <= tot[1])
        st = ms_err_set(err, MS_ERR_FORMAT, "tokenize: the train split's %" PRId64 " document(s) are all empty "
                        "(no text after the document separator): nothing to train on", tot[1]);
    if (st == MS_OK && comm->rank == 0) st = ms_corpus_manifest_write(&job, stats, n_chunks, tok_sha, fp, err);
    st = ms_comm_agree(comm, st, err);
    if (st != MS_OK) goto done;

    double dt = ms_time_now() - t0;
    ms_log("tokenize: train %" PRId64 " tokens / %" PRId64 " docs, heldout %" PRId64
           " tokens / %" PRId64 " docs, %" PRId64 " chunk(s), %.1fs (%.0f tokens/s)",
           tot[0], tot[1], tot[2], tot[3], n_chunks, dt, (double)(tot[0] + tot[2]) / (dt > 0 ? dt : 1));
    if (tot[2] == 0 && job.heldout_fraction > 0)
        ms_log("tokenize: warning: the held-out split is empty (too few documents for "
               "corpus.heldout_fraction %.3g)", job.heldout_fraction);
    ms_runrec_fact(&app->rec, "tokenize.train_tokens", "%" PRId64, tot[0]);
    ms_runrec_fact(&app->rec, "tokenize.train_docs", "%" PRId64, tot[1]);
    ms_runrec_fact(&app->rec, "tokenize.heldout_tokens", "%" PRId64, tot[2]);
    ms_runrec_fact(&app->rec, "tokenize.heldout_docs", "%" PRId64, tot[3]);
    ms_runrec_fact(&app->rec, "tokenize.tokenizer_sha256", "%s", tok_sha);
    ms_runrec_fact(&app->rec, "tokenize.manifest", "%s/%s", dir, MS_TOKENS_MANIFEST);
    ms_runrec_time(&app->rec, "tokenize", dt);

done:
    free(stats);
    ms_tokenizer_free(tok);
    ms_corpus_paths_free(paths, n_paths);
    return st;
}
