/* Unit tests of io/corpus.c: globbing, document readers, held-out split, token shards, token
 * splits and the rank-sharded tokenize core (ranks simulated in one process). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "monosem/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];

static void write_file(const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static char *path_of(const char *name)
{
    static char p[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("MS_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/corpus-unit-%ld", tmp ? tmp : "/tmp", (long)getpid());
    assert_int_equal(ms_mkdirs(g_dir, NULL), MS_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- globbing */
static void test_expand(void **state)
{
    (void)state;
    write_file("b.txt", "x\n");
    write_file("a.txt", "y\n");
    write_file("c.md", "z\n");
    const char *pats[] = {path_of("*.txt"), path_of("a.txt"), path_of("c.md")};
    char **paths = NULL;
    int n = 0;
    ms_err err = {0};
    assert_int_equal(ms_corpus_expand(pats, 3, &paths, &n, &err), MS_OK);
    assert_int_equal(n, 3); /* a.txt matched twice, listed once */
    assert_string_equal(paths[0], path_of("a.txt"));
    assert_string_equal(paths[1], path_of("b.txt"));
    assert_string_equal(paths[2], path_of("c.md"));
    ms_corpus_paths_free(paths, n);

    const char *bad[] = {path_of("*.txt"), path_of("nothing-*.json")};
    assert_int_equal(ms_corpus_expand(bad, 2, &paths, &n, &err), MS_ERR_IO);
    assert_non_null(strstr(err.msg, "corpus.paths[1]"));
    assert_non_null(strstr(err.msg, "nothing-*.json"));
    assert_null(paths);
}

/* ---------------------------------------------------------------- text and jsonl readers */
static int read_all_docs(const char *path, const ms_doc_opts *o, char docs[][64], int64_t *lines,
                         int max)
{
    ms_doc_reader *r = NULL;
    ms_err err = {0};
    assert_int_equal(ms_doc_reader_open(&r, path, o, &err), MS_OK);
    int n = 0;
    for (;;) {
        ms_doc d;
        bool got;
        assert_int_equal(ms_doc_reader_next(r, &d, &got, &err), MS_OK);
        if (!got) break;
        assert_true(n < max);
        assert_int_equal(d.index, n);
        assert_true(d.len < 64);
        memcpy(docs[n], d.text, d.len);
        docs[n][d.len] = '\0';
        assert_int_equal(strlen(d.text), d.len);
        if (lines) lines[n] = d.line;
        n++;
    }
    ms_doc_reader_close(r);
    return n;
}

static void test_text_reader(void **state)
{
    (void)state;
    write_file("d.txt", "one\nline two\n<|doc|>\n\n  \n<|doc|>\r\nthree\n<|doc|>x\n<|doc|>\nfour");
    ms_doc_opts o = {.format = MS_CORPUS_TEXT, .delimiter = "<|doc|>", .eot = -1};
    char docs[8][64];
    int64_t lines[8];
    int n = read_all_docs(path_of("d.txt"), &o, docs, lines, 8);
    assert_int_equal(n, 3); /* the blank document is skipped */
    assert_string_equal(docs[0], "one\nline two\n");
    assert_int_equal(lines[0], 1);
    /* "<|doc|>x" is not a delimiter line: it stays in the text */
    assert_string_equal(docs[1], "three\n<|doc|>x\n");
    assert_int_equal(lines[1], 7);
    assert_string_equal(docs[2], "four");
    assert_int_equal(lines[2], 10);

    o.delimiter = ""; /* one document per file */
    n = read_all_docs(path_of("d.txt"), &o, docs, NULL, 8);
    assert_int_equal(n, 1);
}

static void test_jsonl_reader(void **state)
{
    (void)state;
    write_file("a.jsonl", "{\"text\": \"hello\\nworld\", \"id\": 1}\n\n{\"text\": \"\"}\n{\"body\": \"x\", \"text\": \"b\"}\n");
    ms_doc_opts o = {.format = MS_CORPUS_JSONL, .text_field = "text", .eot = -1};
    char docs[8][64];
    int64_t lines[8];
    int n = read_all_docs(path_of("a.jsonl"), &o, docs, lines, 8);
    assert_int_equal(n, 2);
    assert_string_equal(docs[0], "hello\nworld");
    assert_int_equal(lines[0], 1);
    assert_string_equal(docs[1], "b");
    assert_int_equal(lines[1], 4);

    o.text_field = "body"; /* line 1 lacks "body": error names file:line and the field */
    ms_doc_reader *r = NULL;
    ms_err err = {0};
    assert_int_equal(ms_doc_reader_open(&r, path_of("a.jsonl"), &o, &err), MS_OK);
    ms_doc d;
    bool got;
    assert_int_equal(ms_doc_reader_next(r, &d, &got, &err), MS_ERR_FORMAT);
    char want[1100];
    snprintf(want, sizeof want, "%s:1:", path_of("a.jsonl"));
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, "\"body\""));
    ms_doc_reader_close(r);

    write_file("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
    o.text_field = NULL;
    ms_err_clear(&err);
    assert_int_equal(ms_doc_reader_open(&r, path_of("bad.jsonl"), &o, &err), MS_OK);
    assert_int_equal(ms_doc_reader_next(r, &d, &got, &err), MS_OK);
    assert_true(got);
    assert_int_equal(ms_doc_reader_next(r, &d, &got, &err), MS_ERR_FORMAT);
    snprintf(want, sizeof want, "%s:2:", path_of("bad.jsonl"));
    assert_non_null(strstr(err.msg, want));
    ms_doc_reader_close(r);
}

/* ---------------------------------------------------------------- token shards */
static void write_shard(const char *name, int dtype, const int32_t *ids, size_t n)
{
    ms_tokshard_writer *w = NULL;
    ms_err err = {0};
    assert_int_equal(ms_tokshard_create(&w, path_of(name), dtype, &err), MS_OK);
    assert_int_equal(ms_tokshard_append(w, ids, n, &err), MS_OK);
    assert_int_equal(ms_tokshard_writer_count(w), (int64_t)n);
    assert_int_equal(ms_tokshard_commit(w, &err), MS_OK);
}

static void test_tokshard_roundtrip(void **state)
{
    (void)state;
    enum { N = 200000 }; /* several conversion blocks */
    int32_t *ids = malloc(N * sizeof *ids), *back = malloc(N * sizeof *back);
    for (int dt = 2; dt <= 4; dt += 2) {
        for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 2654435761u) % (dt == 2 ? 65536u : 3000000u));
        write_shard("s.bin", dt, ids, N);
        ms_tokshard s;
        ms_err err = {0};
        assert_int_equal(ms_tokshard_open(&s, path_of("s.bin"), &err), MS_OK);
        assert_int_equal(s.count, N);
        assert_int_equal(s.dtype_bytes, dt);
        assert_int_equal(ms_tokshard_read(&s, 0, N, back, &err), MS_OK);
        assert_memory_equal(ids, back, N * sizeof *ids);
        assert_int_equal(ms_tokshard_read(&s, 12345, 7, back, &err), MS_OK);
        assert_memory_equal(ids + 12345, back, 7 * sizeof *ids);
        assert_int_equal(ms_tokshard_read(&s, N - 3, 4, back, &err), MS_ERR_STATE);
        ms_tokshard_close(&s);
        struct stat sb;
        assert_int_equal(stat(path_of("s.bin"), &sb), 0);
        assert_int_equal(sb.st_size, MS_TOKSHARD_HEADER + (int64_t)N * dt);
    }
    /* an id that does not fit 16 bits */
    ms_tokshard_writer *w = NULL;
    ms_err err = {0};
    assert_int_equal(ms_tokshard_create(&w, path_of("o.bin"), 2, &err), MS_OK);
    int32_t big = 70000;
    assert_int_equal(ms_tokshard_append(w, &big, 1, &err), MS_ERR_FORMAT);
    ms_tokshard_abort(w);
    assert_false(ms_path_exists(path_of("o.bin")));
    free(ids);
    free(back);
}

static void test_tokshard_bad_files(void **state)
{
    (void)state;
    int32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    write_shard("t.bin", 2, ids, 10);
    ms_tokshard s;
    ms_err err = {0};
    /* truncated: the header's count disagrees with the size */
    assert_int_equal(truncate(path_of("t.bin"), MS_TOKSHARD_HEADER + 19), 0);
    assert_int_equal(ms_tokshard_open(&s, path_of("t.bin"), &err), MS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "header says 10 tokens"));
    write_file("m.bin", "NOTTOKENS and some more bytes to pass 32 bytes of header");
    ms_err_clear(&err);
    assert_int_equal(ms_tokshard_open(&s, path_of("m.bin"), &err), MS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "bad magic"));
    write_file("short.bin", "MSTOK");
    ms_err_clear(&err);
    assert_int_equal(ms_tokshard_open(&s, path_of("short.bin"), &err), MS_ERR_FORMAT);
    ms_tokshard_close(&s); /* safe after a failed open */
}

static void test_token_reader(void **state)
{
    (void)state;
    /* documents are runs between eot (0); leading and doubled eot yield no empty documents */
    int32_t ids[] = {0, 5, 6, 0, 0, 7, 0, 8, 9, 10};
    write_shard("docs.bin", 2, ids, 10);
    ms_doc_opts o = {.format = MS_CORPUS_TOKENS, .eot = 0};
    ms_doc_reader *r = NULL;
    ms_err err = {0};
    assert_int_equal(ms_doc_reader_open(&r, path_of("docs.bin"), &o, &err), MS_OK);
    size_t want_n[] = {2, 1, 3};
    int32_t first[] = {5, 7, 8};
    for (int k = 0; k < 3; k++) {
        ms_doc d;
        bool got;
        assert_int_equal(ms_doc_reader_next(r, &d, &got, &err), MS_OK);
        assert_true(got);
        assert_int_equal(d.n_ids, want_n[k]);
        assert_int_equal(d.ids[0], first[k]);
        assert_int_equal(d.index, k);
    }
    ms_doc d;
    bool got;
    assert_int_equal(ms_doc_reader_next(r, &d, &got, &err), MS_OK);
    assert_false(got);
    ms_doc_reader_close(r);
}

/* ---------------------------------------------------------------- held-out split */
static void test_heldout(void **state)
{
    (void)state;
    int held = 0;
    for (int i = 0; i < 20000; i++) {
        bool h = ms_corpus_is_heldout(7, "/x/y/kjv.txt", i, 0.1);
        assert_true(h == ms_corpus_is_heldout(7, "kjv.txt", i, 0.1)); /* prefix-free */
        held += h;
    }
    assert_in_range(held, 1800, 2200);
    int differ = 0;
    for (int i = 0; i < 1000; i++)
        differ += ms_corpus_is_heldout(7, "kjv.txt", i, 0.5) != ms_corpus_is_heldout(8, "kjv.txt", i, 0.5);
    assert_in_range(differ, 350, 650); /* the seed matters */
    assert_false(ms_corpus_is_heldout(7, "a", 3, 0.0));
    assert_true(ms_corpus_is_heldout(7, "a", 3, 1.0));
}

/* ---------------------------------------------------------------- tokenize core */
/* A byte-level "tokenizer": byte b -> id b+1; eot = 0; vocab 257. */
static ms_status byte_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n,
                             size_t *cap, ms_err *err)
{
    (void)ctx;
    (void)err;
    if (*n + len > *cap) {
        *cap = *n + len;
        *ids = realloc(*ids, *cap * sizeof **ids);
    }
    for (size_t i = 0; i < len; i++) (*ids)[(*n)++] = (unsigned char)text[i] + 1;
    return MS_OK;
}

static char *g_files[3];

static void make_corpus(void)
{
    /* 3 files, 60 documents of varied length */
    char name[3][32] = {"c0.txt", "c1.txt", "c2.txt"};
    for (int f = 0; f < 3; f++) {
        char p[1100];
        snprintf(p, sizeof p, "%s/%s", g_dir, name[f]);
        FILE *fp = fopen(p, "wb");
        for (int d = 0; d < 20; d++) {
            if (d) fputs("@@\n", fp);
            for (int k = 0; k < 1 + (d * 7 + f * 3) % 13; k++) fprintf(fp, "file %d doc %d line %d\n", f, d, k);
        }
        fclose(fp);
        g_files[f] = strdup(p);
    }
}

static ms_tokenize_job make_job(const char *out)
{
    ms_tokenize_job j = {
        .paths = g_files,
        .n_paths = 3,
        .doc = {.format = MS_CORPUS_TEXT, .delimiter = "@@", .eot = 0},
        .heldout_fraction = 0.25,
        .seed = 42,
        .chunk_bytes = 700,
        .out_dir = out,
        .eot = 0,
        .vocab_size = 257,
        .encode = byte_encode,
    };
    return j;
}

static int64_t *run_ranks(const ms_tokenize_job *job, int size, int64_t *n_chunks)
{
    int64_t *sum = NULL;
    for (int r = 0; r < size; r++) {
        int64_t *st = NULL, nc = 0;
        ms_err err = {0};
        assert_int_equal(ms_corpus_tokenize_part(job, r, size, &st, &nc, &err), MS_OK);
        if (!sum) {
            sum = calloc((size_t)nc * MS_CHUNK_STATS, sizeof *sum);
            *n_chunks = nc;
        }
        assert_int_equal(nc, *n_chunks);
        for (int64_t i = 0; i < nc * MS_CHUNK_STATS; i++) sum[i] += st[i];
        free(st);
    }
    char fp[17];
    ms_corpus_fingerprint(job, "deadbeef", fp);
    ms_err err = {0};
    assert_int_equal(ms_corpus_manifest_write(job, sum, *n_chunks, "deadbeef", fp, &err), MS_OK);
    return sum;
}

static void test_tokenize_ranks(void **state)
{
    (void)state;
    make_corpus();
    char *o1 = strdup(path_of("tok1")), *o3 = strdup(path_of("tok3"));
    ms_mkdirs(o1, NULL);
    ms_mkdirs(o3, NULL);
    ms_tokenize_job j1 = make_job(o1), j3 = make_job(o3);
    int64_t nc1 = 0, nc3 = 0;
    int64_t *s1 = run_ranks(&j1, 1, &nc1);
    int64_t *s3 = run_ranks(&j3, 3, &nc3);
    assert_true(nc1 >= 4); /* several chunks, so 3 ranks each own some */
    assert_int_equal(nc1, nc3);
    assert_memory_equal(s1, s3, (size_t)nc1 * MS_CHUNK_STATS * sizeof *s1);

    /* shard files byte-identical whatever the rank count */
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cd '%s' && for f in *.bin; do cmp -s \"$f\" '%s'/\"$f\" || exit 1; done && "
             "test $(ls '%s'/*.bin | wc -l) -eq $(ls *.bin | wc -l)", o1, o3, o3);
    assert_int_equal(system(cmd), 0);

    /* the splits reproduce every document exactly once, in order, each in its split */
    ms_tokset tr, ho;
    ms_err err = {0};
    assert_int_equal(ms_tokset_open(&tr, o1, "train", &err), MS_OK);
    assert_int_equal(ms_tokset_open(&ho, o1, "heldout", &err), MS_OK);
    assert_string_equal(tr.tokenizer_sha256, "deadbeef");
    assert_int_equal(tr.vocab_size, 257);
    assert_true(ho.count > 0 && tr.count > ho.count);
    assert_int_equal(tr.n_docs + ho.n_docs, 60);
    int32_t *a = malloc((size_t)tr.count * sizeof *a), *b = malloc((size_t)ho.count * sizeof *b);
    assert_int_equal(ms_tokset_read(&tr, 0, tr.count, a, &err), MS_OK);
    assert_int_equal(ms_tokset_read(&ho, 0, ho.count, b, &err), MS_OK);
    int64_t ia = 0, ib = 0;
    for (int f = 0; f < 3; f++) {
        ms_doc_reader *r = NULL;
        assert_int_equal(ms_doc_reader_open(&r, g_files[f], &j1.doc, &err), MS_OK);
        for (;;) {
            ms_doc d;
            bool got;
            assert_int_equal(ms_doc_reader_next(r, &d, &got, &err), MS_OK);
            if (!got) break;
            bool h = ms_corpus_is_heldout(42, g_files[f], d.index, 0.25);
            int32_t *s = h ? b : a;
            int64_t *i = h ? &ib : &ia;
            assert_int_equal(s[(*i)++], 0); /* eot before each document */
            for (size_t k = 0; k < d.len; k++) assert_int_equal(s[(*i)++], (unsigned char)d.text[k] + 1);
        }
        ms_doc_reader_close(r);
    }
    assert_int_equal(ia, tr.count);
    assert_int_equal(ib, ho.count);

    /* contexts: windows of 16, one more token as target */
    int64_t nctx = ms_tokset_n_contexts(&tr, 16, true);
    assert_int_equal(nctx, (tr.count - 1) / 16);
    int32_t w[17];
    assert_int_equal(ms_tokset_context(&tr, nctx - 1, 16, true, w, &err), MS_OK);
    assert_memory_equal(w, a + (nctx - 1) * 16, sizeof w);
    assert_int_equal(ms_tokset_n_contexts(&tr, 16, false), tr.count / 16);
    free(a);
    free(b);
    ms_tokset_close(&tr);
    ms_tokset_close(&ho);

    char fp[17];
    assert_true(ms_corpus_manifest_fingerprint(o1, fp));
    char want[17];
    ms_corpus_fingerprint(&j1, "deadbeef", want);
    assert_string_equal(fp, want);
    j1.heldout_fraction = 0.3;
    ms_corpus_fingerprint(&j1, "deadbeef", want);
    assert_string_not_equal(fp, want);

    /* re-tokenizing the token shards themselves (format tokens) gives the same streams */
    char *o4 = strdup(path_of("tok4"));
    ms_mkdirs(o4, NULL);
    char **tp = NULL;
    int ntp = 0;
    char pat[1100];
    snprintf(pat, sizeof pat, "%s/train-*.bin", o1);
    const char *pats[] = {pat};
    assert_int_equal(ms_corpus_expand(pats, 1, &tp, &ntp, &err), MS_OK);
    ms_tokenize_job j4 = make_job(o4);
    j4.paths = tp;
    j4.n_paths = ntp;
    j4.doc.format = MS_CORPUS_TOKENS;
    j4.heldout_fraction = 0;
    j4.encode = NULL;
    int64_t nc4 = 0;
    free(run_ranks(&j4, 2, &nc4));
    ms_tokset t4, t1;
    assert_int_equal(ms_tokset_open(&t4, o4, "train", &err), MS_OK);
    assert_int_equal(ms_tokset_open(&t1, o1, "train", &err), MS_OK);
    assert_int_equal(t4.count, t1.count);
    int32_t *x = malloc((size_t)t1.count * 4), *y = malloc((size_t)t1.count * 4);
    assert_int_equal(ms_tokset_read(&t4, 0, t4.count, x, &err), MS_OK);
    assert_int_equal(ms_tokset_read(&t1, 0, t1.count, y, &err), MS_OK);
    assert_memory_equal(x, y, (size_t)t1.count * 4);
    free(x);
    free(y);
    ms_tokset_close(&t4);
    ms_tokset_close(&t1);
    ms_corpus_paths_free(tp, ntp);

    /* a missing manifest is a state error naming it */
    ms_tokset none;
    ms_err_clear(&err);
    assert_int_equal(ms_tokset_open(&none, g_dir, "train", &err), MS_ERR_STATE);
    assert_non_null(strstr(err.msg, "manifest.json"));

    free(s1);
    free(s3);
    free(o1);
    free(o3);
    free(o4);
    for (int f = 0; f < 3; f++) free(g_files[f]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_text_reader),
        cmocka_unit_test(test_jsonl_reader),
        cmocka_unit_test(test_tokshard_roundtrip),
        cmocka_unit_test(test_tokshard_bad_files),
        cmocka_unit_test(test_token_reader),
        cmocka_unit_test(test_heldout),
        cmocka_unit_test(test_tokenize_ranks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
