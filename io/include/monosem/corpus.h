/* monosem/corpus.h: corpus readers, the held-out split, token shards and the tokenize core
 * (io/corpus*.c).
 * Documents are read one at a time (memory bounded by the largest document); token shards are
 * read by range with pread. Files: io/corpus.c (globs, document readers, held-out split),
 * io/corpus_tokens.c (token shards, tokenized splits), io/corpus_tokenize.c (the tokenize core,
 * manifest, fingerprint).
 * Conventions: token ids are int32 in memory (2 or 4 bytes on disk), positions and counts int64;
 * what a function returns malloc'd is the caller's to free with the named _free/_close (ms_doc
 * contents are borrowed from the reader). Nothing here is collective or uses MPI: the tokenize
 * core takes (rank, size) as plain ints. A reader, shard or split handle is used by one thread at
 * a time. */
#ifndef MONOSEM_CORPUS_H
#define MONOSEM_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Token shard file (little-endian): 32-byte header
 *   char magic[8] = "MSTOKENS"; uint32 version = 1; uint32 dtype = bytes per token (2 or 4);
 *   uint64 count (tokens); uint64 checksum = first 8 bytes of sha256 of the token bytes read as
 *   a little-endian integer (0 = none: written before checksums)
 * then count tokens of dtype bytes each. A document is preceded by <|endoftext|>. */
#define MS_TOKSHARD_MAGIC "MSTOKENS"
#define MS_TOKSHARD_VERSION 1u
#define MS_TOKSHARD_HEADER 32
/* Manifest written by `monosem tokenize` into corpus.token_dir. */
#define MS_TOKENS_MANIFEST "manifest.json"

/* Expands glob patterns into malloc'd paths: each pattern's matches sorted, in pattern order,
 * duplicates dropped; a pattern matching nothing is an error (MS_ERR_IO naming it). Caller
 * frees with ms_corpus_paths_free. */
ms_status ms_corpus_expand(const char *const *patterns, int n_patterns, char ***paths,
                           int *n_paths, ms_err *err);
void ms_corpus_paths_free(char **paths, int n);

/* How to cut a file into documents. */
typedef struct ms_doc_opts {
    int format;             /* ms_corpus_format */
    const char *delimiter;  /* text: a line equal to this ends a document; NULL/"" = whole file */
    const char *text_field; /* jsonl: string field holding the document (default "text") */
    int32_t eot;            /* tokens: id separating documents (-1 = whole file is one doc) */
} ms_doc_opts;

/* One document. text/len for text and jsonl, ids/n_ids for token files; both point into the
 * reader and stay valid until the next ms_doc_reader_next. */
typedef struct ms_doc {
    const char *text;
    size_t len;
    const int32_t *ids;
    size_t n_ids;
    int64_t index; /* 0-based document index within its file */
    int64_t line;  /* 1-based line where it starts (text, jsonl); 0 for token files */
} ms_doc;

typedef struct ms_doc_reader ms_doc_reader;
/* Opens path; on error *r is NULL. Caller closes. */
ms_status ms_doc_reader_open(ms_doc_reader **r, const char *path, const ms_doc_opts *opts,
                             ms_err *err);
/* Next non-empty document: *got = false at the end. jsonl errors name file:line. */
ms_status ms_doc_reader_next(ms_doc_reader *r, ms_doc *doc, bool *got, ms_err *err);
void ms_doc_reader_close(ms_doc_reader *r);

/* Seeded held-out split by document: a pure function of (seed, file basename, document index
 * within the file), so it does not depend on rank count, file order or path prefix. */
bool ms_corpus_is_heldout(uint64_t seed, const char *path, int64_t doc_index, double fraction);

/* --- token shard writer: writes path.tmp.<pid>, ms_tokshard_commit fixes the header count,
 * fsyncs and renames into place (and frees w); ms_tokshard_abort removes the temp file. */
typedef struct ms_tokshard_writer ms_tokshard_writer;
ms_status ms_tokshard_create(ms_tokshard_writer **w, const char *path, int dtype_bytes,
                             ms_err *err);
/* Appends n ids; an id that does not fit dtype is MS_ERR_FORMAT. */
ms_status ms_tokshard_append(ms_tokshard_writer *w, const int32_t *ids, size_t n, ms_err *err);
int64_t ms_tokshard_writer_count(const ms_tokshard_writer *w);
ms_status ms_tokshard_commit(ms_tokshard_writer *w, ms_err *err);
void ms_tokshard_abort(ms_tokshard_writer *w);

/* --- token shard reader (header validated against the file size). */
typedef struct ms_tokshard {
    int fd;
    char *path;
    int dtype_bytes;
    int64_t count;
    uint64_t sum;  /* header bytes 24..31: first 8 bytes of sha256(token bytes); 0 = none */
    bool verified; /* set by the first read (which verifies the whole shard) */
} ms_tokshard;
/* Verifies the token bytes against the header's checksum (MS_ERR_FORMAT "...: corrupt: ...");
 * the first ms_tokshard_read of a handle does it, so a rank checks the shards it reads. */
ms_status ms_tokshard_verify(const ms_tokshard *s, ms_err *err);
ms_status ms_tokshard_open(ms_tokshard *s, const char *path, ms_err *err);
/* Reads tokens [start, start+n) widened to int32. */
ms_status ms_tokshard_read(const ms_tokshard *s, int64_t start, int64_t n, int32_t *out,
                           ms_err *err);
void ms_tokshard_close(ms_tokshard *s); /* safe on a zeroed struct */

/* --- a tokenized split (train or heldout) from token_dir/manifest.json: the shards of the
 * split concatenated into one stream of tokens. */
typedef struct ms_tokset {
    int n_shards;
    ms_tokshard *shards;
    int64_t *offsets; /* n_shards + 1: first token of each shard in the stream */
    int64_t count;    /* tokens in the split */
    int64_t n_docs;
    int32_t vocab_size, eot;
    char tokenizer_sha256[65];
} ms_tokset;
/* split is "train" or "heldout". An empty split opens with count 0. */
ms_status ms_tokset_open(ms_tokset *ts, const char *token_dir, const char *split, ms_err *err);
void ms_tokset_close(ms_tokset *ts); /* safe on a zeroed struct */
/* Reads tokens [start, start+n) of the stream. */
ms_status ms_tokset_read(const ms_tokset *ts, int64_t start, int64_t n, int32_t *out,
                         ms_err *err);
/* Contexts: non-overlapping windows of `context` tokens; window i starts at i*context. With
 * `target` the window carries one more token (the next-token target of its last position),
 * so n = floor((count - 1) / context) instead of floor(count / context). */
int64_t ms_tokset_n_contexts(const ms_tokset *ts, int64_t context, bool target);
ms_status ms_tokset_context(const ms_tokset *ts, int64_t i, int64_t context, bool target,
                            int32_t *out, ms_err *err);

/* --- tokenizing a corpus into shards (the core of `monosem tokenize`, MPI-free so it can be
 * tested by simulating ranks). Documents are grouped in order into chunks of about
 * chunk_bytes of input; chunk c is written by rank c % size as <out_dir>/train-<c>.bin and
 * heldout-<c>.bin, so the files do not depend on the rank count. Every rank reads (not
 * tokenizes) the whole corpus to find the chunk boundaries: cheap next to BPE encoding. */
typedef ms_status (*ms_encode_fn)(void *ctx, const char *text, size_t len, int32_t **ids,
                                  size_t *n, size_t *cap, ms_err *err);
typedef struct ms_tokenize_job {
    char **paths; /* expanded input files */
    int n_paths;
    ms_doc_opts doc;
    double heldout_fraction;
    uint64_t seed;
    int64_t chunk_bytes; /* input bytes per chunk (token files: 4 per id) */
    const char *out_dir;
    int32_t eot, vocab_size;
    ms_encode_fn encode; /* text formats */
    void *encode_ctx;
} ms_tokenize_job;
/* Per chunk, 4 counts: train tokens, train docs, heldout tokens, heldout docs. */
#define MS_CHUNK_STATS 4
/* Tokenizes this rank's chunks. *stats (malloc'd, caller frees) has MS_CHUNK_STATS entries per
 * chunk, zero for chunks of other ranks: sum them over ranks (allreduce) for the manifest. */
ms_status ms_corpus_tokenize_part(const ms_tokenize_job *job, int rank, int size,
                                  int64_t **stats, int64_t *n_chunks, ms_err *err);
/* Writes <out_dir>/manifest.json atomically from the summed stats, after deleting the shard
 * files (and temporaries) of earlier runs that it does not list. fingerprint identifies the
 * inputs and settings (see ms_corpus_fingerprint). */
ms_status ms_corpus_manifest_write(const ms_tokenize_job *job, const int64_t *stats,
                                   int64_t n_chunks, const char *tokenizer_sha256,
                                   const char *fingerprint, ms_err *err);
/* 16 hex digits over the input paths, sizes and mtimes, the split/chunk settings and the
 * tokenizer hash: a manifest with the same fingerprint means the shards are up to date. */
void ms_corpus_fingerprint(const ms_tokenize_job *job, const char *tokenizer_sha256,
                           char out[17]);
/* Reads the fingerprint of an existing manifest into out; false if none or unreadable. */
bool ms_corpus_manifest_fingerprint(const char *token_dir, char out[17]);
/* Identity of a tokenizer's files: sha256 of "<sha256(vocab)>\n<sha256(merges)>\n" (hex). */
ms_status ms_tokenizer_files_sha256(const char *vocab_path, const char *merges_path,
                                    char out[65], ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
