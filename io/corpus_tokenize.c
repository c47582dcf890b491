/* The tokenize core (`monosem tokenize`, MPI-free): documents grouped into rank-independent
 * chunks written as train/heldout shards, the manifest, the inputs' fingerprint. */
#include "monosem/io.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ===================================================================== tokenize core */

static char *shard_name(const char *split, int64_t chunk)
{
    char *s = malloc(64);
    if (s) snprintf(s, 64, "%s-%06" PRId64 ".bin", split, chunk);
    return s;
}

static int job_dtype(const ms_tokenize_job *job) { return job->vocab_size <= 65536 ? 2 : 4; }

/* Writes one chunk's documents (already grouped) for one split. */
typedef struct chunk_out {
    ms_tokshard_writer *w[2]; /* train, heldout */
} chunk_out;

static ms_status chunk_open(const ms_tokenize_job *job, int64_t chunk, chunk_out *co, ms_err *err)
{
    static const char *const split[2] = {"train", "heldout"};
    for (int s = 0; s < 2; s++) {
        char *name = shard_name(split[s], chunk);
        char *p = name ? ms_path_join(job->out_dir, name) : NULL;
        free(name);
        if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        ms_status st = ms_tokshard_create(&co->w[s], p, job_dtype(job), err);
        free(p);
        if (st != MS_OK) return st;
    }
    return MS_OK;
}

static ms_status chunk_close(const ms_tokenize_job *job, int64_t chunk, chunk_out *co, ms_err *err)
{
    static const char *const split[2] = {"train", "heldout"};
    ms_status st = MS_OK;
    for (int s = 0; s < 2; s++) {
        if (!co->w[s]) continue;
        if (st == MS_OK && ms_tokshard_writer_count(co->w[s]) > 0) {
            st = ms_tokshard_commit(co->w[s], err);
        } else {
            ms_tokshard_abort(co->w[s]); /* empty split of this chunk: no file */
            if (st == MS_OK) {
                /* remove a stale file of the same name from an earlier run */
                char *name = shard_name(split[s], chunk);
                char *p = name ? ms_path_join(job->out_dir, name) : NULL;
                if (p) unlink(p);
                free(p);
                free(name);
            }
        }
        co->w[s] = NULL;
    }
    return st;
}

ms_status ms_corpus_tokenize_part(const ms_tokenize_job *job, int rank, int size,
                                  int64_t **stats_out, int64_t *n_chunks_out, ms_err *err)
{
    *stats_out = NULL;
    *n_chunks_out = 0;
    if (size < 1 || rank < 0 || rank >= size)
        return ms_err_set(err, MS_ERR_USAGE, "tokenize: rank %d of %d is invalid", rank, size);
    if (job->doc.format != MS_CORPUS_TOKENS && !job->encode)
        return ms_err_set(err, MS_ERR_USAGE, "tokenize: a text corpus needs a tokenizer");
    if (job->eot < 0)
        return ms_err_set(err, MS_ERR_FORMAT, "tokenize: the tokenizer has no <|endoftext|> token");
    size_t scap = 64 * MS_CHUNK_STATS;
    int64_t *stats = calloc(scap, sizeof *stats);
    int32_t *ids = NULL;
    size_t n_ids = 0, ids_cap = 0;
    if (!stats) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    ms_status st = MS_OK;
    int64_t chunk = 0, chunk_fill = 0;
    chunk_out co = {{NULL, NULL}};
    bool mine = (chunk % size) == rank;
    for (int f = 0; f < job->n_paths && st == MS_OK; f++) {
        ms_doc_reader *r = NULL;
        st = ms_doc_reader_open(&r, job->paths[f], &job->doc, err);
        while (st == MS_OK) {
            ms_doc d;
            bool got = false;
            st = ms_doc_reader_next(r, &d, &got, err);
            if (st != MS_OK || !got) break;
            if ((size_t)(chunk + 1) * MS_CHUNK_STATS > scap) {
                int64_t *ns = realloc(stats, 2 * scap * sizeof *ns);
                if (!ns) {
                    st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
                    break;
                }
                memset(ns + scap, 0, scap * sizeof *ns);
                stats = ns;
                scap *= 2;
            }
            size_t in_bytes = job->doc.format == MS_CORPUS_TOKENS ? 4 * d.n_ids : d.len;
            if (mine) {
                if (!co.w[0]) st = chunk_open(job, chunk, &co, err);
                bool held = ms_corpus_is_heldout(job->seed, job->paths[f], d.index,
                                                 job->heldout_fraction);
                n_ids = 0;
                if (st == MS_OK) {
                    if (ids_cap == 0) {
                        ids_cap = 4096;
                        if (!(ids = malloc(ids_cap * sizeof *ids)))
                            st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
                    }
                    if (st == MS_OK) ids[n_ids++] = job->eot; /* documents start with eot */
                }
                if (st == MS_OK && job->doc.format == MS_CORPUS_TOKENS) {
                    if (n_ids + d.n_ids > ids_cap) {
                        size_t nc = n_ids + d.n_ids;
                        int32_t *ni = realloc(ids, nc * sizeof *ni);
                        if (!ni) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
                        else {
                            ids = ni;
                            ids_cap = nc;
                        }
                    }
                    if (st == MS_OK) {
                        memcpy(ids + n_ids, d.ids, d.n_ids * sizeof *ids);
                        n_ids += d.n_ids;
                    }
                } else if (st == MS_OK) {
                    st = job->encode(job->encode_ctx, d.text, d.len, &ids, &n_ids, &ids_cap, err);
                }
                for (size_t i = 0; st == MS_OK && i < n_ids; i++)
                    if (ids[i] < 0 || ids[i] >= job->vocab_size)
                        st = ms_err_set(err, MS_ERR_FORMAT,
                                        "%s: document %" PRId64 ": token id %d outside the vocabulary (%d)",
                                        job->paths[f], d.index, ids[i], job->vocab_size);
                if (st == MS_OK) st = ms_tokshard_append(co.w[held ? 1 : 0], ids, n_ids, err);
                if (st == MS_OK) {
                    int64_t *s = stats + chunk * MS_CHUNK_STATS + (held ? 2 : 0);
                    s[0] += (int64_t)n_ids;
                    s[1] += 1;
                }
            }
            chunk_fill += (int64_t)in_bytes;
            if (st == MS_OK && chunk_fill >= job->chunk_bytes) {
                if (mine) st = chunk_close(job, chunk, &co, err);
                chunk++;
                chunk_fill = 0;
                mine = (chunk % size) == rank;
            }
        }
        ms_doc_reader_close(r);
    }
    if (chunk_fill > 0) {
        if (mine && st == MS_OK) st = chunk_close(job, chunk, &co, err);
        chunk++;
    }
    for (int s = 0; s < 2; s++) ms_tokshard_abort(co.w[s]);
    free(ids);
    if (st != MS_OK) {
        free(stats);
        return st;
    }
    *stats_out = stats;
    *n_chunks_out = chunk;
    return MS_OK;
}

/* Deletes shard files of an earlier run that the new manifest will not list (a corpus that
 * shrank leaves train-000007.bin behind), and temporaries of killed runs. Runs before the
 * manifest is written: until then the directory has no manifest, so no reader trusts it. */
static ms_status remove_stale_shards(const ms_tokenize_job *job, const int64_t *stats, int64_t n_chunks,
                                     ms_err *err)
{
    DIR *dp = opendir(job->out_dir);
    if (!dp) return ms_err_set(err, MS_ERR_IO, "%s: cannot list: %s", job->out_dir, strerror(errno));
    ms_status st = MS_OK;
    struct dirent *e;
    while (st == MS_OK && (e = readdir(dp))) {
        int s = strncmp(e->d_name, "train-", 6) == 0 ? 0 : strncmp(e->d_name, "heldout-", 8) == 0 ? 1 : -1;
        if (s < 0) continue;
        const char *num = e->d_name + (s == 0 ? 6 : 8);
        char *end;
        long long c = strtoll(num, &end, 10);
        bool shard = end != num && strcmp(end, ".bin") == 0;
        bool tmp = end != num && strncmp(end, ".bin.tmp.", 9) == 0;
        if (!shard && !tmp) continue;
        if (shard && c >= 0 && c < n_chunks && stats[c * MS_CHUNK_STATS + 2 * s] > 0) continue; /* listed */
        char *p = ms_path_join(job->out_dir, e->d_name);
        if (!p) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        else if (unlink(p) != 0 && errno != ENOENT)
            st = ms_err_set(err, MS_ERR_IO, "%s: cannot remove a stale shard: %s", p, strerror(errno));
        free(p);
    }
    closedir(dp);
    return st;
}

ms_status ms_corpus_manifest_write(const ms_tokenize_job *job, const int64_t *stats,
                                   int64_t n_chunks, const char *tokenizer_sha256,
                                   const char *fingerprint, ms_err *err)
{
    ms_status sst = remove_stale_shards(job, stats, n_chunks, err);
    if (sst != MS_OK) return sst;
    cJSON *j = cJSON_CreateObject();
    if (!j) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "format", MS_TOKSHARD_MAGIC);
    cJSON_AddStringToObject(j, "dtype", job_dtype(job) == 2 ? "uint16" : "uint32");
    cJSON_AddStringToObject(j, "tokenizer_sha256", tokenizer_sha256);
    cJSON_AddNumberToObject(j, "vocab_size", job->vocab_size);
    cJSON_AddNumberToObject(j, "eot", job->eot);
    cJSON_AddNumberToObject(j, "heldout_fraction", job->heldout_fraction);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, job->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddStringToObject(j, "fingerprint", fingerprint);
    cJSON *inputs = cJSON_AddArrayToObject(j, "inputs");
    for (int i = 0; i < job->n_paths; i++) cJSON_AddItemToArray(inputs, cJSON_CreateString(job->paths[i]));
    static const char *const split[2] = {"train", "heldout"};
    for (int s = 0; s < 2; s++) {
        cJSON *arr = cJSON_AddArrayToObject(j, split[s]);
        int64_t tok = 0, docs = 0;
        for (int64_t c = 0; c < n_chunks; c++) {
            const int64_t *cs = stats + c * MS_CHUNK_STATS + 2 * s;
            if (cs[0] == 0) continue;
            char *name = shard_name(split[s], c);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", name ? name : "?");
            cJSON_AddNumberToObject(e, "tokens", (double)cs[0]);
            cJSON_AddNumberToObject(e, "docs", (double)cs[1]);
            cJSON_AddItemToArray(arr, e);
            free(name);
            tok += cs[0];
            docs += cs[1];
        }
        char key[32];
        snprintf(key, sizeof key, "%s_tokens", split[s]);
        cJSON_AddNumberToObject(j, key, (double)tok);
        snprintf(key, sizeof key, "%s_docs", split[s]);
        cJSON_AddNumberToObject(j, key, (double)docs);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char *p = ms_path_join(job->out_dir, MS_TOKENS_MANIFEST);
    ms_status st = p ? ms_file_write_atomic(p, text, strlen(text), err)
                     : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    free(p);
    free(text);
    return st;
}

void ms_corpus_fingerprint(const ms_tokenize_job *job, const char *tokenizer_sha256, char out[17])
{
    uint64_t h = ms_fnv1a64("monosem-tokens-v1", 17, 0);
    for (int i = 0; i < job->n_paths; i++) {
        h = ms_fnv1a64(job->paths[i], strlen(job->paths[i]) + 1, h);
        struct stat sb;
        int64_t meta[3] = {0, 0, 0};
        if (stat(job->paths[i], &sb) == 0) {
            meta[0] = (int64_t)sb.st_size;
            meta[1] = (int64_t)sb.st_mtim.tv_sec;
            meta[2] = (int64_t)sb.st_mtim.tv_nsec;
        }
        h = ms_fnv1a64(meta, sizeof meta, h);
    }
    const char *delim = job->doc.delimiter ? job->doc.delimiter : "";
    const char *field = job->doc.text_field ? job->doc.text_field : "";
    h = ms_fnv1a64(delim, strlen(delim) + 1, h);
    h = ms_fnv1a64(field, strlen(field) + 1, h);
    int64_t nums[4] = {job->doc.format, (int64_t)job->seed, job->chunk_bytes, job->eot};
    h = ms_fnv1a64(nums, sizeof nums, h);
    h = ms_fnv1a64(&job->heldout_fraction, sizeof job->heldout_fraction, h);
    h = ms_fnv1a64(tokenizer_sha256, strlen(tokenizer_sha256), h);
    snprintf(out, 17, "%016" PRIx64, h);
}

bool ms_corpus_manifest_fingerprint(const char *token_dir, char out[17])
{
    out[0] = '\0';
    char *p = ms_path_join(token_dir, MS_TOKENS_MANIFEST);
    char *text = NULL;
    size_t len = 0;
    bool ok = false;
    if (p && ms_file_read_all(p, &text, &len, NULL) == MS_OK) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "fingerprint") : NULL;
        if (cJSON_IsString(f) && strlen(f->valuestring) == 16) {
            memcpy(out, f->valuestring, 17);
            ok = true;
        }
        cJSON_Delete(j);
    }
    free(text);
    free(p);
    return ok;
}

ms_status ms_tokenizer_files_sha256(const char *vocab_path, const char *merges_path,
                                    char out[65], ms_err *err)
{
    char a[65], b[65], both[132];
    ms_status st = ms_sha256_file(vocab_path, a, err);
    if (st == MS_OK) st = ms_sha256_file(merges_path, b, err);
    if (st != MS_OK) return st;
    snprintf(both, sizeof both, "%s\n%s\n", a, b);
    ms_sha256_buf(both, strlen(both), out);
    return MS_OK;
}
