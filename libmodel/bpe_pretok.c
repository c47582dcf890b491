/* GPT-2 BPE text side: the byte alphabet, UTF-8 checks and the PCRE2 pre-tokenizer (the regex
 * split into words that BPE then merges). */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

/* ===================================================================== byte alphabet */

void ms_bpe_alphabet(uint16_t b2u[256], int16_t u2b[324])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        b2u[b] = printable ? (uint16_t)b : (uint16_t)(256 + n++);
    }
    for (int u = 0; u < 324; u++) u2b[u] = -1;
    for (int b = 0; b < 256; b++) u2b[b2u[b]] = (int16_t)b;
}

size_t ms_bpe_bytes_to_alpha(char *out, const uint8_t *s, size_t n, const uint16_t b2u[256])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned u = b2u[s[i]];
        if (u < 0x80) {
            out[o++] = (char)u;
        } else {
            out[o++] = (char)(0xC0 | (u >> 6));
            out[o++] = (char)(0x80 | (u & 0x3F));
        }
    }
    return o;
}

long ms_bpe_alpha_to_bytes(uint8_t *out, const char *s, size_t n, const int16_t u2b[324])
{
    const uint8_t *p = (const uint8_t *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned u;
        if (p[i] < 0x80) {
            u = p[i];
            i += 1;
        } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
            u = ((unsigned)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1; /* 3-4 byte characters are never in the alphabet */
        }
        if (u >= 324 || u2b[u] < 0) return -1;
        out[o++] = (uint8_t)u2b[u];
    }
    return (long)o;
}

/* ===================================================================== UTF-8 */

int ms_utf8_seq_len(const uint8_t *s, size_t avail)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (avail >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (avail < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

size_t ms_utf8_first_invalid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = ms_utf8_seq_len(s + i, n - i);
        if (k == 0) return i;
        i += (size_t)k;
    }
    return n;
}

/* ===================================================================== pre-tokenizer */

/* ECMAScript \s: WhiteSpace (TAB VT FF SP NBSP ZWNBSP + Zs) and LineTerminator (LF CR LS PS). */
#define MS_WS "\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}" \
              "\\x{205f}\\x{3000}\\x{feff}"
static const char ms_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" MS_WS "\\p{L}\\p{N}]+|[" MS_WS
    "]+(?![^" MS_WS "])|[" MS_WS "]+";

ms_status ms_pretok_init(ms_pretok *p, ms_err *err)
{
    memset(p, 0, sizeof *p);
    int ec;
    PCRE2_SIZE eo;
    p->re = pcre2_compile((PCRE2_SPTR)ms_gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &ec, &eo, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ms_err_set(err, MS_ERR_UNSUPPORTED,
                          "tokenizer: PCRE2 cannot compile the GPT-2 pattern at offset %zu: %s",
                          (size_t)eo, (const char *)msg);
    }
    p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
    p->mctx = pcre2_match_context_create(NULL);
    if (!p->md || !p->mctx) {
        ms_pretok_free(p);
        return ms_err_set(err, MS_ERR_NOMEM, "tokenizer: out of memory (PCRE2 match data)");
    }
    /* JIT is ~10x faster; without it (no JIT support in this libpcre2) pcre2_match is used. */
    if (pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0) {
        p->jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
        if (p->jit_stack) pcre2_jit_stack_assign(p->mctx, NULL, p->jit_stack);
    }
    return MS_OK;
}

void ms_pretok_free(ms_pretok *p)
{
    if (!p) return;
    if (p->jit_stack) pcre2_jit_stack_free(p->jit_stack);
    if (p->mctx) pcre2_match_context_free(p->mctx);
    if (p->md) pcre2_match_data_free(p->md);
    if (p->re) pcre2_code_free(p->re);
    free(p->sub);
    memset(p, 0, sizeof *p);
}

ms_status ms_pretok_run(ms_pretok *p, const uint8_t *text, size_t len, ms_pretok_fn fn, void *ctx,
                        ms_err *err)
{
    if (len == 0) return MS_OK;
    const uint8_t *subject = text;
    size_t bad = ms_utf8_first_invalid(text, len);
    if (bad < len) {
        /* Each invalid byte becomes '!', an "other" character like the U+FFFD a UTF-8 decoder
         * would produce; offsets are unchanged, and words are cut from the original bytes. */
        if (p->sub_cap < len) {
            uint8_t *ns = realloc(p->sub, len);
            if (!ns) return ms_err_set(err, MS_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", len);
            p->sub = ns;
            p->sub_cap = len;
        }
        memcpy(p->sub, text, bad);
        for (size_t i = bad; i < len;) {
            int k = ms_utf8_seq_len(text + i, len - i);
            if (k == 0) {
                p->sub[i++] = '!';
            } else {
                memcpy(p->sub + i, text + i, (size_t)k);
                i += (size_t)k;
            }
        }
        subject = p->sub;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
    size_t start = 0;
    while (start < len) {
        int rc = p->jit_stack ? pcre2_jit_match(p->re, subject, len, start, 0, p->md, p->mctx)
                              : pcre2_match(p->re, subject, len, start, PCRE2_NO_UTF_CHECK, p->md,
                                            p->mctx);
        size_t ms, me;
        if (rc == PCRE2_ERROR_NOMATCH) {
            ms = len; /* cannot happen (every character matches an alternative); keep the rest */
            me = len;
        } else if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ms_err_set(err, MS_ERR_UNSUPPORTED, "tokenizer: PCRE2 match failed at byte %zu: %s",
                              start, (const char *)msg);
        } else {
            ms = ov[0];
            me = ov[1];
        }
        ms_status st;
        if (ms > start && (st = fn(ctx, text + start, ms - start)) != MS_OK) return st;
        if (me <= ms) { /* no empty matches exist in the pattern; guard against looping */
            if (ms >= len) break;
            int k = ms_utf8_seq_len(subject + ms, len - ms);
            me = ms + (size_t)(k > 0 ? k : 1);
        }
        if ((st = fn(ctx, text + ms, me - ms)) != MS_OK) return st;
        start = me;
    }
    return MS_OK;
}

size_t ms_pretok_safe_cut(const uint8_t *text, size_t n)
{
    for (size_t p = n; p-- > 1;)
        if (text[p] == ' ' && text[p - 1] > ' ' && text[p - 1] < 0x7F) return p;
    return 0;
}
