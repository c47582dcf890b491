/* The report's text buffer: JSON numbers and strings appended to a growing buffer, written to
 * the data (.js) files. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

void app_rbuf_free(app_rbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void app_rbuf_clear(app_rbuf *b)
{
    b->len = 0;
    if (b->p) b->p[0] = 0;
}

static bool grow(app_rbuf *b, size_t extra)
{
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void app_rbuf_put(app_rbuf *b, const char *s, size_t n)
{
    if (!grow(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void app_rbuf_puts(app_rbuf *b, const char *s) { app_rbuf_put(b, s, strlen(s)); }

void app_rbuf_printf(app_rbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void app_rbuf_num(app_rbuf *b, double v)
{
    if (!isfinite(v)) {
        app_rbuf_put(b, "null", 4);
        return;
    }
    if (v == 0) { /* most window activations: skip printf */
        app_rbuf_put(b, "0", 1);
        return;
    }
    char t[32];
    int n = snprintf(t, sizeof t, "%.5g", v);
    app_rbuf_put(b, t, (size_t)n);
}

void app_rbuf_int(app_rbuf *b, int64_t v)
{
    char t[24], *e = t + sizeof t, *p = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    app_rbuf_put(b, p, (size_t)(e - p));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

void app_rbuf_str(app_rbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    app_rbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (c == '"' || c == '\\') {
            char t[2] = {'\\', (char)c};
            app_rbuf_put(b, t, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            app_rbuf_printf(b, "\\u%04x", c);
            i++;
        } else {
            size_t l = utf8_len(u + i, n - i);
            if (l == 0) {
                app_rbuf_puts(b, "\\ufffd");
                i++;
            } else if (l == 3 && u[i] == 0xe2 && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9)) {
                /* U+2028/2029 end a line in older JavaScript parsers */
                app_rbuf_printf(b, "\\u202%c", u[i + 2] == 0xa8 ? '8' : '9');
                i += 3;
            } else {
                app_rbuf_put(b, s + i, l);
                i += l;
            }
        }
    }
    app_rbuf_put(b, "\"", 1);
}

ms_status app_rbuf_write(const app_rbuf *b, const char *path, ms_err *err)
{
    if (b->oom) return ms_err_set(err, MS_ERR_NOMEM, "report: %s: out of memory while building the file", path);
    FILE *f = fopen(path, "wb");
    if (!f) return ms_err_set(err, MS_ERR_IO, "report: %s: cannot create the file: %s", path, strerror(errno));
    errno = 0;
    size_t w = b->len ? fwrite(b->p, 1, b->len, f) : 0;
    int e = w != b->len ? errno : 0; /* the failed write's errno (ENOSPC, EIO), before fclose */
    int rc = fclose(f);
    if (!e && rc != 0) e = errno;
    if (w != b->len || rc != 0)
        return ms_err_set(err, MS_ERR_IO, "report: %s: write failed: %s", path, e ? strerror(e) : "short write");
    return MS_OK;
}
