/* Unit tests of the GPT-2 BPE tokenizer and trainer: reference ids from the npm gpt-3-encoder
 * (fixtures), invalid UTF-8 cutting, random-bytes roundtrips, heap vs naive merge kernels, bad
 * files, safe streaming cuts, and trainer outputs that the encoder reloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "bpe_internal.h"
#include "monosem/model.h"

static char g_vocab[4096], g_merges[4096];
static void write_file(const char *path, const char *text);
static ms_tokenizer *g_tok;

static const char *data_dir(void)
{
    const char *d = getenv("MS_TEST_DATA");
    return d ? d : "tests/data";
}

static const char *tmp_dir(void)
{
    const char *d = getenv("MS_TEST_TMP");
    return d ? d : "/tmp";
}

static int setup_gpt2(void **state)
{
    (void)state;
    const char *dir = getenv("MS_GPT2_DIR");
    if (!dir || !*dir) dir = "data/gpt2";
    snprintf(g_vocab, sizeof g_vocab, "%s/encoder.json", dir);
    snprintf(g_merges, sizeof g_merges, "%s/vocab.bpe", dir);
    if (!ms_path_exists(g_vocab) || !ms_path_exists(g_merges)) {
        fprintf(stderr,
                "FAIL: GPT-2 BPE files not found: %s and %s. Run scripts/fetch-gpt2-bpe %s "
                "(scripts/test does it before ctest) or set MS_GPT2_DIR.\n",
                g_vocab, g_merges, dir);
        return -1;
    }
    ms_err err = {0};
    if (ms_tokenizer_load(&g_tok, g_vocab, g_merges, &err) != MS_OK) {
        fprintf(stderr, "FAIL: loading the GPT-2 tokenizer: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown_gpt2(void **state)
{
    (void)state;
    ms_tokenizer_free(g_tok);
    g_tok = NULL;
    return 0;
}

static char *read_data(const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/%s", data_dir(), name);
    char *buf = NULL;
    ms_err err = {0};
    if (ms_file_read_all(path, &buf, len, &err) != MS_OK) fail_msg("%s", err.msg);
    return buf;
}

static void encode_all(ms_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n)
{
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    ms_err err = {0};
    if (ms_tokenizer_encode(tok, text, len, ids, n, &cap, &err) != MS_OK) fail_msg("encode: %s", err.msg);
}

static void assert_roundtrip(ms_tokenizer *tok, const char *text, size_t len)
{
    int32_t *ids;
    size_t n;
    encode_all(tok, text, len, &ids, &n);
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    ms_err err = {0};
    if (ms_tokenizer_decode(tok, ids, n, &out, &olen, &ocap, &err) != MS_OK) fail_msg("decode: %s", err.msg);
    assert_int_equal(olen, len);
    assert_memory_equal(out, text, len);
    assert_int_equal(out[olen], '\0');
    free(out);
    free(ids);
}

static void check_fixture(const char *name)
{
    char fn[256];
    size_t len, ilen;
    snprintf(fn, sizeof fn, "%s.txt", name);
    char *text = read_data(fn, &len);
    snprintf(fn, sizeof fn, "%s.ids", name);
    char *idtext = read_data(fn, &ilen);
    size_t n_exp = 0;
    int32_t *exp = malloc((ilen / 2 + 1) * sizeof *exp);
    for (char *p = idtext, *e; *p; p = e) {
        long v = strtol(p, &e, 10);
        if (e == p) break;
        exp[n_exp++] = (int32_t)v;
    }
    int32_t *ids;
    size_t n;
    encode_all(g_tok, text, len, &ids, &n);
    size_t first_diff = 0;
    while (first_diff < n && first_diff < n_exp && ids[first_diff] == exp[first_diff]) first_diff++;
    if (first_diff < n || n != n_exp)
        fail_msg("%s: %zu tokens, reference %zu; first difference at token %zu: got %d, expected %d", name, n,
                 n_exp, first_diff, first_diff < n ? ids[first_diff] : -1,
                 first_diff < n_exp ? exp[first_diff] : -1);
    assert_roundtrip(g_tok, text, len);
    /* the second encode is served from the word cache: same ids */
    int32_t *ids2;
    size_t n2;
    encode_all(g_tok, text, len, &ids2, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(ids2, ids, n * sizeof *ids);
    free(ids2);
    free(ids);
    free(exp);
    free(idtext);
    free(text);
}

static void test_gpt2_moby(void **state)
{
    (void)state;
    check_fixture("moby_ch1");
}

static void test_gpt2_genesis(void **state)
{
    (void)state;
    check_fixture("genesis_1_2");
}

static void test_gpt2_basics(void **state)
{
    (void)state;
    assert_int_equal(ms_tokenizer_vocab_size(g_tok), 50257);
    assert_int_equal(ms_tokenizer_eot(g_tok), 50256);
    size_t len;
    const char *b = ms_tokenizer_token_bytes(g_tok, 50256, &len);
    assert_non_null(b);
    assert_int_equal(len, 13);
    assert_memory_equal(b, "<|endoftext|>", 13);
    b = ms_tokenizer_token_bytes(g_tok, 220, &len); /* "Ġ" = a space */
    assert_int_equal(len, 1);
    assert_int_equal(b[0], ' ');
    assert_null(ms_tokenizer_token_bytes(g_tok, 50257, &len));
    assert_null(ms_tokenizer_token_bytes(g_tok, -1, &len));
    /* decode rejects an id out of range with a message naming it */
    int32_t bad[2] = {15496, 99999};
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    ms_err err = {0};
    assert_int_equal(ms_tokenizer_decode(g_tok, bad, 2, &out, &olen, &ocap, &err), MS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "99999"));
    /* appending: ids accumulate across calls */
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    assert_int_equal(ms_tokenizer_encode(g_tok, "Hello", 5, &ids, &n, &cap, &err), MS_OK);
    assert_int_equal(ms_tokenizer_encode(g_tok, " world", 6, &ids, &n, &cap, &err), MS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 15496);
    assert_int_equal(ids[1], 995);
    free(ids);
    free(out);
}

static void test_gpt2_tricky(void **state)
{
    (void)state;
    size_t len;
    char *json = read_data("tricky.json", &len);
    cJSON *root = cJSON_ParseWithLength(json, len);
    assert_non_null(root);
    int count = 0;
    for (cJSON *e = root->child; e; e = e->next, count++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "text");
        const cJSON *ja = cJSON_GetObjectItemCaseSensitive(e, "ids");
        assert_true(cJSON_IsString(t) && cJSON_IsArray(ja));
        const char *text = t->valuestring;
        size_t tl = strlen(text);
        /* cJSON's strings end at a NUL: the string holding U+0000 is given as explicit bytes */
        static const char ctl[] = "controls \0\x01\x1b[31mred\x1b[0m \x7f del";
        if (strstr(text, "controls ") == text) {
            text = ctl;
            tl = sizeof ctl - 1;
        }
        int32_t *ids;
        size_t n;
        encode_all(g_tok, text, tl, &ids, &n);
        int n_exp = cJSON_GetArraySize(ja);
        bool same = (int)n == n_exp;
        for (int i = 0; same && i < n_exp; i++) same = ids[i] == (int32_t)cJSON_GetArrayItem(ja, i)->valuedouble;
        if (!same) {
            fprintf(stderr, "string %d %s: got", count, text);
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  expected");
            for (int i = 0; i < n_exp; i++) fprintf(stderr, " %d", (int)cJSON_GetArrayItem(ja, i)->valuedouble);
            fprintf(stderr, "\n");
            fail_msg("tricky string %d differs from the reference encoder", count);
        }
        assert_roundtrip(g_tok, text, tl);
        free(ids);
    }
    assert_true(count >= 40);
    cJSON_Delete(root);
    free(json);
}

/* Replace every U+FFFD (EF BF BD) by a single invalid byte 0xFF. */
static size_t fffd_to_invalid(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i];) {
        if ((uint8_t)s[i] == 0xEF && (uint8_t)s[i + 1] == 0xBF && (uint8_t)s[i + 2] == 0xBD) {
            s[o++] = (char)0xFF;
            i += 3;
        } else {
            s[o++] = s[i++];
        }
    }
    s[o] = '\0';
    return o;
}

typedef struct {
    char pieces[64][64];
    int n;
} piece_list;

static ms_status collect_piece(void *ctx, const uint8_t *w, size_t n)
{
    piece_list *pl = ctx;
    if (pl->n < 64 && n < 64) {
        memcpy(pl->pieces[pl->n], w, n);
        pl->pieces[pl->n][n] = '\0';
    }
    pl->n++;
    return MS_OK;
}

static void test_invalid_utf8_pieces(void **state)
{
    (void)state;
    size_t len;
    char *json = read_data("pieces.json", &len);
    cJSON *root = cJSON_ParseWithLength(json, len);
    assert_non_null(root);
    ms_pretok pre;
    ms_err err = {0};
    assert_int_equal(ms_pretok_init(&pre, &err), MS_OK);
    int count = 0;
    for (cJSON *e = root->child; e; e = e->next, count++) {
        char text[256];
        snprintf(text, sizeof text, "%s", cJSON_GetObjectItemCaseSensitive(e, "text")->valuestring);
        size_t tl = fffd_to_invalid(text);
        piece_list got = {.n = 0};
        assert_int_equal(ms_pretok_run(&pre, (const uint8_t *)text, tl, collect_piece, &got, &err), MS_OK);
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(e, "pieces");
        assert_int_equal(got.n, cJSON_GetArraySize(exp));
        for (int i = 0; i < got.n; i++) {
            char want[64];
            snprintf(want, sizeof want, "%s", cJSON_GetArrayItem(exp, i)->valuestring);
            fffd_to_invalid(want);
            assert_string_equal(got.pieces[i], want);
        }
        assert_roundtrip(g_tok, text, tl);
    }
    assert_int_equal(count, 14);
    ms_pretok_free(&pre);
    cJSON_Delete(root);
    free(json);
}

/* xorshift64*: reproducible random bytes */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Random text from a mix of pieces: ASCII words, spaces, digits, valid multi-byte characters,
 * truncated/overlong/surrogate sequences and fully random bytes. */
static size_t random_text(uint64_t *s, char *buf, size_t max)
{
    static const char *frags[] = {"the", " ", "  ", "\n", "'s", "'", "123", "é", "中", "🤖", "\xe2\x80",
                                  "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80", "\t",
                                  "\xc2\xa0", "!?", "ll", "\xef\xbb\xbf", "\xf0\x9f"};
    size_t n = 0, target = rng_next(s) % max;
    int mode = (int)(rng_next(s) % 3);
    while (n < target) {
        if (mode == 0 || (mode == 2 && rng_next(s) % 2)) {
            buf[n++] = (char)(rng_next(s) & 0xFF);
        } else {
            const char *f = frags[rng_next(s) % (sizeof frags / sizeof frags[0])];
            size_t fl = strlen(f);
            if (n + fl > max) break;
            memcpy(buf + n, f, fl);
            n += fl;
        }
    }
    return n;
}

static void test_random_bytes_roundtrip(void **state)
{
    (void)state;
    uint64_t s = 0x1234567887654321ull;
    char *buf = malloc(4096);
    for (int it = 0; it < 3000; it++) {
        size_t n = random_text(&s, buf, 4096);
        assert_roundtrip(g_tok, buf, n);
    }
    /* all 256 single bytes, and every byte pair */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        assert_roundtrip(g_tok, &c, 1);
        for (int d = 0; d < 256; d += 7) {
            char p[2] = {(char)b, (char)d};
            assert_roundtrip(g_tok, p, 2);
        }
    }
    free(buf);
}

static void test_heap_matches_naive(void **state)
{
    (void)state;
    uint64_t s = 42;
    static const char alpha[] = "aabbe nrt'0l";
    int32_t *x = malloc(4000 * sizeof *x), *y = malloc(4000 * sizeof *y);
    for (int it = 0; it < 300; it++) {
        size_t n = 2 + rng_next(&s) % 3000;
        int kind = it % 3;
        for (size_t i = 0; i < n; i++) {
            uint8_t b = kind == 0 ? (uint8_t)alpha[rng_next(&s) % (sizeof alpha - 1)]
                        : kind == 1 ? (uint8_t)"ab"[rng_next(&s) % 2]
                                    : (uint8_t)(rng_next(&s) & 0xFF);
            x[i] = y[i] = ms_tokenizer_byte_id(g_tok, b);
        }
        size_t m1 = ms_tokenizer_bpe_naive(g_tok, x, n);
        size_t m2 = ms_tokenizer_bpe_heap(g_tok, y, n);
        assert_int_equal(m1, m2);
        assert_memory_equal(x, y, m1 * sizeof *x);
    }
    free(x);
    free(y);
}

/* 256 byte tokens (GPT-2 alphabet, ids = byte values) + "ab" 256, "aba" 257, "abab" 258. */
static void write_small_vocab(const char *v)
{
    uint16_t b2u[256];
    int16_t u2b[324];
    ms_bpe_alphabet(b2u, u2b);
    FILE *f = fopen(v, "wb");
    assert_non_null(f);
    fputs("{", f);
    for (int b = 0; b < 256; b++) {
        char a[4];
        size_t n = ms_bpe_bytes_to_alpha(a, (const uint8_t[]){(uint8_t)b}, 1, b2u);
        fprintf(f, "\"%s%.*s\": %d, ", (a[0] == '"' || a[0] == '\\') ? "\\" : "", (int)n, a, b);
    }
    fputs("\"ab\": 256, \"aba\": 257, \"abab\": 258}", f);
    fclose(f);
}

/* Random byte edits of valid vocabulary and merges files: every load either succeeds (and then
 * round-trips text) or fails with a message; never a crash (run under ASan in scripts/test). */
static void test_load_mutations(void **state)
{
    (void)state;
    char v[1024], m[1024], vm[1024], mm[1024];
    snprintf(v, sizeof v, "%s/tok_mut_vocab.json", tmp_dir());
    snprintf(m, sizeof m, "%s/tok_mut_merges.txt", tmp_dir());
    snprintf(vm, sizeof vm, "%s/tok_mut_vocab_x.json", tmp_dir());
    snprintf(mm, sizeof mm, "%s/tok_mut_merges_x.txt", tmp_dir());
    write_small_vocab(v);
    write_file(m, "#version: 0.2\nab a\na b\nab ab\n");
    char *vt, *mt;
    size_t vl, ml;
    ms_err err = {0};
    assert_int_equal(ms_file_read_all(v, &vt, &vl, &err), MS_OK);
    assert_int_equal(ms_file_read_all(m, &mt, &ml, &err), MS_OK);
    uint64_t s = 99;
    int n_ok = 0, n_err = 0;
    for (int it = 0; it < 400; it++) {
        bool on_vocab = it % 2 == 0;
        char *buf = malloc((on_vocab ? vl : ml) + 1);
        size_t bl = on_vocab ? vl : ml;
        memcpy(buf, on_vocab ? vt : mt, bl);
        int edits = 1 + (int)(rng_next(&s) % 4);
        for (int e = 0; e < edits && bl > 0; e++) {
            size_t at = rng_next(&s) % bl;
            switch (rng_next(&s) % 3) {
            case 0: buf[at] = (char)(rng_next(&s) & 0xFF); break;           /* flip */
            case 1: memmove(buf + at, buf + at + 1, bl - at - 1); bl--; break; /* delete */
            default: bl = at; break;                                         /* truncate */
            }
        }
        FILE *f = fopen(on_vocab ? vm : mm, "wb");
        assert_non_null(f);
        fwrite(buf, 1, bl, f);
        fclose(f);
        free(buf);
        ms_tokenizer *t = NULL;
        ms_err e2 = {0};
        ms_status st = ms_tokenizer_load(&t, on_vocab ? vm : v, on_vocab ? m : mm, &e2);
        if (st == MS_OK) {
            n_ok++;
            static const char probe[] = "abab aba \xff ba";
            assert_roundtrip(t, probe, sizeof probe - 1);
            ms_tokenizer_free(t);
        } else {
            n_err++;
            assert_null(t);
            assert_true(strlen(e2.msg) > 10);
        }
    }
    assert_true(n_err > 50); /* the edits do break files */
    free(vt);
    free(mt);
}

/* A merges table where a merge's product takes part in a lower-ranked pair: the reference
 * merges every occurrence of the lowest pair before looking at new pairs, so "abab" becomes
 * [ab, ab], not [aba, b] (which merging one occurrence at a time would give). */
static void test_merge_all_occurrences(void **state)
{
    (void)state;
    char v[1024], m[1024];
    snprintf(v, sizeof v, "%s/tok_sem_vocab.json", tmp_dir());
    snprintf(m, sizeof m, "%s/tok_sem_merges.txt", tmp_dir());
    write_small_vocab(v);
    write_file(m, "#version: 0.2\nab a\na b\nab ab\n");
    ms_tokenizer *t = NULL;
    ms_err err = {0};
    if (ms_tokenizer_load(&t, v, m, &err) != MS_OK) fail_msg("%s", err.msg);
    int32_t *ids;
    size_t n;
    encode_all(t, "abab", 4, &ids, &n); /* [ab, ab] then rank 2 (ab, ab) -> abab */
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 258);
    free(ids);
    encode_all(t, "ababa", 5, &ids, &n); /* [ab, ab, a] -> (ab,a) rank 0 first: [ab, aba] */
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 257);
    free(ids);
    /* long words go through the heap kernel: same rule */
    char word[402];
    for (int i = 0; i < 400; i++) word[i] = "ab"[i % 2];
    word[400] = 'a';
    encode_all(t, word, 401, &ids, &n);
    /* 200 ab + a; (ab,a) rank 0 first: 199 ab + aba; then (ab,ab): 99 abab, ab, aba */
    assert_int_equal(n, 101);
    for (int i = 0; i < 99; i++) assert_int_equal(ids[i], 258);
    assert_int_equal(ids[99], 256);
    assert_int_equal(ids[100], 257);
    free(ids);
    int32_t x[401], y[401];
    for (int i = 0; i < 401; i++) x[i] = y[i] = ms_tokenizer_byte_id(t, (uint8_t)word[i]);
    size_t m1 = ms_tokenizer_bpe_naive(t, x, 401), m2 = ms_tokenizer_bpe_heap(t, y, 401);
    assert_int_equal(m1, m2);
    assert_memory_equal(x, y, m1 * sizeof *x);
    ms_tokenizer_free(t);
}

static void test_safe_cut(void **state)
{
    (void)state;
    size_t len;
    char *text = read_data("moby_ch1.txt", &len);
    ms_pretok pre;
    ms_err err = {0};
    assert_int_equal(ms_pretok_init(&pre, &err), MS_OK);
    int32_t *all;
    size_t n_all;
    encode_all(g_tok, text, len, &all, &n_all);
    /* cut at the safe point before several positions: encoding both halves = encoding all */
    for (size_t at = 50; at < len; at += 997) {
        size_t cut = ms_pretok_safe_cut((const uint8_t *)text, at);
        assert_true(cut > 0 && cut < at);
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        assert_int_equal(ms_tokenizer_encode(g_tok, text, cut, &ids, &n, &cap, &err), MS_OK);
        assert_int_equal(ms_tokenizer_encode(g_tok, text + cut, len - cut, &ids, &n, &cap, &err), MS_OK);
        assert_int_equal(n, n_all);
        assert_memory_equal(ids, all, n * sizeof *ids);
        free(ids);
    }
    assert_int_equal(ms_pretok_safe_cut((const uint8_t *)"    ", 4), 0);
    free(all);
    ms_pretok_free(&pre);
    free(text);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A vocabulary of the 256 byte tokens and <|endoftext|> only. */
static void write_bytes_vocab(const char *path)
{
    uint16_t b2u[256];
    int16_t u2b[324];
    ms_bpe_alphabet(b2u, u2b);
    cJSON *j = cJSON_CreateObject();
    for (int b = 0; b < 256; b++) {
        char a[4] = {0};
        ms_bpe_bytes_to_alpha(a, (const uint8_t[]){(uint8_t)b}, 1, b2u);
        cJSON_AddNumberToObject(j, a, b);
    }
    cJSON_AddNumberToObject(j, "<|endoftext|>", 256);
    char *text = cJSON_PrintUnformatted(j);
    write_file(path, text);
    free(text);
    cJSON_Delete(j);
}

static void expect_load_error(const char *vocab, const char *merges, ms_status want, const char *needle)
{
    ms_tokenizer *t = (ms_tokenizer *)1;
    ms_err err = {0};
    ms_status st = ms_tokenizer_load(&t, vocab, merges, &err);
    if (st != want || !strstr(err.msg, needle))
        fail_msg("load(%s, %s): status %d, message \"%s\"; expected %d with \"%s\"", vocab, merges, st, err.msg,
                 want, needle);
    assert_null(t);
}

static void test_bad_files(void **state)
{
    (void)state;
    char v[1024], m[1024], bad[1024];
    snprintf(bad, sizeof bad, "%s/tok_bad.json", tmp_dir());
    snprintf(m, sizeof m, "%s/tok_bad_merges.txt", tmp_dir());
    expect_load_error("/nonexistent/encoder.json", g_merges, MS_ERR_IO, "/nonexistent/encoder.json");
    expect_load_error(g_vocab, "/nonexistent/vocab.bpe", MS_ERR_IO, "/nonexistent/vocab.bpe");
    write_file(bad, "{\"a\": 1,\n \"b\": }");
    expect_load_error(bad, g_merges, MS_ERR_FORMAT, "tok_bad.json:2:");
    write_file(bad, "[1, 2]");
    expect_load_error(bad, g_merges, MS_ERR_FORMAT, "JSON object");
    write_file(bad, "{\"a\": \"x\"}");
    expect_load_error(bad, g_merges, MS_ERR_FORMAT, "\"a\"");
    write_file(bad, "{\"a\": 0, \"b\": 2000000000}");
    expect_load_error(bad, g_merges, MS_ERR_FORMAT, "dense");
    write_file(bad, "{\"a\": 0, \"b\": 0}");
    expect_load_error(bad, g_merges, MS_ERR_FORMAT, "used twice");
    write_file(bad, "{\"a\": 0, \"b\": 1}");
    expect_load_error(bad, g_merges, MS_ERR_FORMAT, "byte 0x");
    /* merges that do not match the vocabulary, or malformed lines */
    write_file(m, "#version: 0.2\nĠ t\nzzzzqq xxyyq\n");
    expect_load_error(g_vocab, m, MS_ERR_FORMAT, "tok_bad_merges.txt:3:");
    write_file(m, "#version: 0.2\nĠ t extra\n");
    expect_load_error(g_vocab, m, MS_ERR_FORMAT, "tok_bad_merges.txt:2:");
    write_file(m, "#version: 0.2\na b c\n");
    expect_load_error(g_vocab, m, MS_ERR_FORMAT, "two tokens");
    write_file(m, "#version: 0.2\n\xe4\xb8\xad b\n");
    expect_load_error(g_vocab, m, MS_ERR_FORMAT, "alphabet");
    /* an empty merges file beside a vocabulary of merged tokens: refused (it would silently
     * encode byte by byte); with a bytes-only vocabulary it is valid */
    write_file(m, "#version: 0.2\n");
    expect_load_error(g_vocab, m, MS_ERR_FORMAT, "no merges (no line after #version)");
    write_file(m, "");
    expect_load_error(g_vocab, m, MS_ERR_FORMAT, "no merges (empty file)");
    write_bytes_vocab(bad);
    write_file(m, "#version: 0.2\n");
    ms_tokenizer *t = NULL;
    ms_err err = {0};
    assert_int_equal(ms_tokenizer_load(&t, bad, m, &err), MS_OK);
    int32_t *ids;
    size_t n;
    encode_all(t, "hello", 5, &ids, &n);
    assert_int_equal(n, 5);
    free(ids);
    ms_tokenizer_free(t);
    (void)v;
}

static void test_trainer(void **state)
{
    (void)state;
    size_t len;
    char *text = read_data("genesis_1_2.txt", &len);
    ms_bpe_counter *c = NULL;
    ms_err err = {0};
    assert_int_equal(ms_bpe_counter_init(&c, &err), MS_OK);
    assert_int_equal(ms_bpe_counter_add(c, text, len, &err), MS_OK);
    /* a second document with invalid bytes: the trainer must accept any bytes */
    static const char doc2[] = "caf\xe9 \xff\xfe!! the the";
    assert_int_equal(ms_bpe_counter_add(c, doc2, sizeof doc2 - 1, &err), MS_OK);
    assert_true(ms_bpe_counter_distinct(c) > 300);
    assert_true(ms_bpe_counter_total(c) > 1500);
    char v1[1024], m1[1024], v2[1024], m2[1024];
    snprintf(v1, sizeof v1, "%s/tok_train_vocab.json", tmp_dir());
    snprintf(m1, sizeof m1, "%s/tok_train_merges.txt", tmp_dir());
    snprintf(v2, sizeof v2, "%s/tok_train_vocab2.json", tmp_dir());
    snprintf(m2, sizeof m2, "%s/tok_train_merges2.txt", tmp_dir());
    ms_bpe_result res;
    assert_int_equal(ms_bpe_train(c, 300, v1, m1, &res, &err), MS_OK);
    assert_int_equal(res.n_merges, 300);
    assert_true(res.vocab_size <= 256 + 300 + 1 && res.vocab_size > 256 + 250);
    /* deterministic */
    assert_int_equal(ms_bpe_train(c, 300, v2, m2, NULL, &err), MS_OK);
    char *a, *b;
    size_t la, lb;
    assert_int_equal(ms_file_read_all(m1, &a, &la, &err), MS_OK);
    assert_int_equal(ms_file_read_all(m2, &b, &lb, &err), MS_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_true(strncmp(a, "#version: 0.2\n", 14) == 0);
    free(a);
    free(b);
    /* the encoder loads it, roundtrips, compresses, and has <|endoftext|> last */
    ms_tokenizer *t = NULL;
    if (ms_tokenizer_load(&t, v1, m1, &err) != MS_OK) fail_msg("%s", err.msg);
    assert_int_equal(ms_tokenizer_vocab_size(t), res.vocab_size);
    assert_int_equal(ms_tokenizer_eot(t), res.vocab_size - 1);
    int32_t *ids;
    size_t n;
    encode_all(t, text, len, &ids, &n);
    assert_true(n < len / 2);
    free(ids);
    assert_roundtrip(t, text, len);
    uint64_t s = 7;
    char *buf = malloc(2048);
    for (int it = 0; it < 500; it++) {
        size_t k = random_text(&s, buf, 2048);
        assert_roundtrip(t, buf, k);
    }
    free(buf);
    /* asking for more merges than pairs exist stops early without error */
    ms_bpe_counter *small = NULL;
    assert_int_equal(ms_bpe_counter_init(&small, &err), MS_OK);
    assert_int_equal(ms_bpe_counter_add(small, "abab abab", 9, &err), MS_OK);
    assert_int_equal(ms_bpe_train(small, 50, v2, m2, &res, &err), MS_OK);
    /* words "abab" and " abab": merges ab, then (ab ab) and ( ,ab) / ... until single tokens */
    assert_true(res.n_merges >= 2 && res.n_merges < 50);
    ms_tokenizer *t2 = NULL;
    assert_int_equal(ms_tokenizer_load(&t2, v2, m2, &err), MS_OK);
    encode_all(t2, "abab abab", 9, &ids, &n);
    assert_int_equal(n, 2);
    free(ids);
    ms_tokenizer_free(t2);
    ms_bpe_counter_free(small);
    ms_tokenizer_free(t);
    ms_bpe_counter_free(c);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_basics),
        cmocka_unit_test(test_gpt2_moby),
        cmocka_unit_test(test_gpt2_genesis),
        cmocka_unit_test(test_gpt2_tricky),
        cmocka_unit_test(test_invalid_utf8_pieces),
        cmocka_unit_test(test_random_bytes_roundtrip),
        cmocka_unit_test(test_heap_matches_naive),
        cmocka_unit_test(test_merge_all_occurrences),
        cmocka_unit_test(test_load_mutations),
        cmocka_unit_test(test_safe_cut),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_trainer),
    };
    return cmocka_run_group_tests(tests, setup_gpt2, teardown_gpt2);
}
