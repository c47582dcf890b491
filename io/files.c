/* Small file helpers: mkdir -p, whole-file reads, atomic writes (tmp + fsync + rename), sha256. */
#include "monosem/io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

ms_status ms_mkdirs(const char *path, ms_err *err)
{
    if (!path || !*path) return MS_OK;
    char *p = strdup(path);
    if (!p) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c == '/' || c == '\0') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                ms_status st = ms_err_set(err, MS_ERR_IO, "%s: cannot create directory: %s", p,
                                          strerror(errno));
                free(p);
                return st;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ms_err_set(err, MS_ERR_IO, "%s: exists and is not a directory", path);
    return MS_OK;
}

ms_status ms_file_read_all(const char *path, char **out, size_t *len, ms_err *err)
{
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ms_err_set(err, MS_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return MS_OK;
}

ms_status ms_file_write_atomic(const char *path, const void *buf, size_t len, ms_err *err)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    ms_status st = MS_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        st = ms_err_set(err, MS_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            st = ms_err_set(err, MS_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (st == MS_OK && fsync(fd) != 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == MS_OK)
        st = ms_err_set(err, MS_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (st == MS_OK && rename(tmp, path) != 0)
        st = ms_err_set(err, MS_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != MS_OK) unlink(tmp);
done:
    free(tmp);
    return st;
}

char *ms_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    size_t k = la;
    if (la > 0 && a[la - 1] != '/') s[k++] = '/';
    memcpy(s + k, b, lb + 1);
    return s;
}

double ms_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024.0;
}

bool ms_path_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void hex_digest(const unsigned char *d, unsigned n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void ms_sha256_buf(const void *buf, size_t len, char out[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    EVP_Digest(buf, len, d, &dn, EVP_sha256(), NULL);
    hex_digest(d, dn, out);
}

ms_status ms_sha256_file(const char *path, char out[65], ms_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ms_err_set(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *chunk = malloc(1 << 20);
    ms_status st = MS_OK;
    if (!ctx || !chunk) {
        st = ms_err_set(err, MS_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    size_t got;
    while ((got = fread(chunk, 1, 1 << 20, f)) > 0) EVP_DigestUpdate(ctx, chunk, got);
    if (ferror(f)) {
        st = ms_err_set(err, MS_ERR_IO, "%s: read error", path);
        goto done;
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    EVP_DigestFinal_ex(ctx, d, &dn);
    hex_digest(d, dn, out);
done:
    EVP_MD_CTX_free(ctx);
    free(chunk);
    fclose(f);
    return st;
}

uint64_t ms_fnv1a64(const void *buf, size_t len, uint64_t h)
{
    if (h == 0) h = 1469598103934665603ULL;
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

const char *ms_create_error(const char *path)
{
    char *tmp = strdup(path ? path : "");
    if (!tmp) return strerror(ENOMEM);
    const char *dir = dirname(tmp);
    struct statvfs sv;
    struct stat sb;
    int e = 0;
    if (path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        e = EISDIR;
    else if (statvfs(dir, &sv) != 0)
        e = errno;
    else if (sv.f_flag & ST_RDONLY)
        e = EROFS;
    else if (access(dir, W_OK) != 0)
        e = errno;
    else if (sv.f_bavail == 0)
        e = ENOSPC;
    free(tmp);
    return e ? strerror(e) : "reason unknown";
}
