/* Choosing the checkpoint to resume from: the latest if it verifies (sha256 of its data), else
 * the previous one kept by ms_safetensors_write_rotate, with a message naming the corrupt file. */
#include "monosem/io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Opens and verifies one checkpoint file; *why gets the reason it is unusable. */
static bool ckpt_good(const char *path, ms_err *why)
{
    ms_safetensors st;
    ms_err_clear(why);
    if (ms_safetensors_open(&st, path, why)) return false;
    bool has = ms_safetensors_meta(&st, MS_SAFETENSORS_CHECKSUM_KEY) != NULL;
    ms_safetensors_close(&st);
    if (!has) {
        ms_err_set(why, MS_ERR_FORMAT, "%s: no %s in its header (damaged, or written without checksums)", path,
                   MS_SAFETENSORS_CHECKSUM_KEY);
        return false;
    }
    return true;
}

ms_status ms_ckpt_pick(const char *path, int *use, ms_err *err)
{
    *use = 0;
    char prev[4096], bad[4096];
    snprintf(prev, sizeof prev, "%s.prev", path);
    snprintf(bad, sizeof bad, "%s.corrupt", path);
    const bool have = ms_path_exists(path), have_prev = ms_path_exists(prev);
    if (!have && !have_prev) return MS_OK;
    ms_err why = {0}, why_prev = {0};
    if (have && ckpt_good(path, &why)) {
        *use = 1;
        return MS_OK;
    }
    if (have_prev && ckpt_good(prev, &why_prev)) {
        if (have) {
            /* moved aside: the next checkpoint must not rotate it into path.prev */
            if (rename(path, bad) != 0)
                return ms_err_set(err, MS_ERR_IO, "%s: corrupt checkpoint (%s), and it cannot be moved aside: %s", path,
                                  why.msg, strerror(errno));
            ms_log("checkpoint %s is corrupt (%s); moved to %s; falling back to the previous checkpoint %s", path,
                   why.msg, bad, prev);
        } else {
            ms_log("checkpoint %s is missing (a crash between rotations); resuming from the previous checkpoint %s",
                   path, prev);
        }
        *use = 2;
        return MS_OK;
    }
    if (have && have_prev)
        return ms_err_set(err, MS_ERR_STATE, "corrupt checkpoints, none to resume from: %s; and %s: delete them to start over",
                          why.msg, why_prev.msg);
    return ms_err_set(err, MS_ERR_STATE, "corrupt checkpoint, no previous one to fall back to: %s: delete it to start over",
                      have ? why.msg : why_prev.msg);
}
