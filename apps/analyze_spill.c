/* An SAE's sparse codes from analyze's pass 1 on local disk, read back by pass 2. */
#include "analyze_spill.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPILL_BUF (4 << 20)

ms_status app_spill_init(app_spill *s, const char *dir, int64_t U, ms_err *err)
{
    memset(s, 0, sizeof *s);
    s->U = U;
    if (!dir || !*dir) dir = getenv("TMPDIR");
    snprintf(s->path, sizeof s->path, "%s/monosem-analyze-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(s->path);
    if (fd < 0) return ms_err_set(err, MS_ERR_IO, "%s: cannot create a scratch file (set analyze.scratch_dir or TMPDIR)", s->path);
    unlink(s->path);
    s->f = fdopen(fd, "w+b");
    s->pairs_i = malloc((size_t)U * sizeof *s->pairs_i + 1);
    s->pairs_v = malloc((size_t)U * sizeof *s->pairs_v + 1);
    if (!s->f || !s->pairs_i || !s->pairs_v) {
        if (!s->f) close(fd);
        app_spill_free(s);
        return ms_err_set(err, MS_ERR_NOMEM, "analyze scratch file: out of memory");
    }
    setvbuf(s->f, NULL, _IOFBF, SPILL_BUF);
    return MS_OK;
}

void app_spill_free(app_spill *s)
{
    if (s->f) fclose(s->f);
    free(s->pairs_i);
    free(s->pairs_v);
    memset(s, 0, sizeof *s);
}

ms_status app_spill_write(app_spill *s, const float *f, int64_t n, ms_err *err)
{
    for (int64_t r = 0; r < n; r++) {
        const float *row = f + r * s->U;
        int32_t k = 0;
        for (int64_t u0 = 0; u0 < s->U; u0 += 16) { /* mostly zeros: a vectorisable test per block */
            int64_t ue = u0 + 16 < s->U ? u0 + 16 : s->U;
            int any = 0;
            for (int64_t u = u0; u < ue; u++) any |= row[u] != 0.0f;
            if (!any) continue;
            for (int64_t u = u0; u < ue; u++)
                if (row[u] != 0.0f) {
                    s->pairs_i[k] = (int32_t)u;
                    s->pairs_v[k++] = row[u];
                }
        }
        if (fwrite(&k, sizeof k, 1, s->f) != 1 || fwrite(s->pairs_i, sizeof *s->pairs_i, (size_t)k, s->f) != (size_t)k ||
            fwrite(s->pairs_v, sizeof *s->pairs_v, (size_t)k, s->f) != (size_t)k)
            return ms_err_set(err, MS_ERR_IO, "%s: writing the analysis scratch file failed: %s (set analyze.scratch_dir "
                              "to a file system with room)", s->path, strerror(errno));
        s->bytes += (int64_t)sizeof k + 8 * (int64_t)k;
    }
    return MS_OK;
}

ms_status app_spill_rewind(app_spill *s, ms_err *err)
{
    if (fflush(s->f) != 0 || fseek(s->f, 0, SEEK_SET) != 0)
        return ms_err_set(err, MS_ERR_IO, "%s: flushing the analysis scratch file failed", s->path);
    return MS_OK;
}

ms_status app_spill_read(app_spill *s, float *f, int64_t n, ms_err *err)
{
    memset(f, 0, (size_t)n * (size_t)s->U * sizeof *f);
    for (int64_t r = 0; r < n; r++) {
        int32_t k = 0;
        bool ok = fread(&k, sizeof k, 1, s->f) == 1 && k >= 0 && k <= s->U;
        ok = ok && fread(s->pairs_i, sizeof *s->pairs_i, (size_t)k, s->f) == (size_t)k &&
             fread(s->pairs_v, sizeof *s->pairs_v, (size_t)k, s->f) == (size_t)k;
        if (!ok) return ms_err_set(err, MS_ERR_IO, "%s: reading the analysis scratch file back failed", s->path);
        float *row = f + r * s->U;
        for (int32_t j = 0; j < k; j++) {
            if (s->pairs_i[j] < 0 || s->pairs_i[j] >= s->U)
                return ms_err_set(err, MS_ERR_FORMAT, "%s: corrupt analysis scratch file", s->path);
            row[s->pairs_i[j]] = s->pairs_v[j];
        }
    }
    return MS_OK;
}
