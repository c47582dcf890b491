/* What `monosem run` remembers of each unit of work (a stage for one model or one SAE):
 * <out_dir>/stages/<unit>.json holds the configuration keys the unit's outputs depend on, the
 * identities of its inputs (the hashes of the units that made them) and whether it finished,
 * so a rerun can skip it, resume it, or redo it and say why. Rank 0 only (plain files). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "run_state.h"

void app_unit_hash(app_unit *u)
{
    uint64_t h = ms_fnv1a64(u->keys ? u->keys : "", u->keys ? strlen(u->keys) : 0, 0);
    for (int i = 0; i < u->n_inputs; i++) {
        h = ms_fnv1a64(u->inputs[i].unit, strlen(u->inputs[i].unit), h);
        h = ms_fnv1a64("=", 1, h);
        h = ms_fnv1a64(u->inputs[i].hash, strlen(u->inputs[i].hash), h);
        h = ms_fnv1a64("\n", 1, h);
    }
    snprintf(u->hash, sizeof u->hash, "%016llx", (unsigned long long)h);
}

void app_unit_input(app_unit *u, const char *unit, const char *hash)
{
    if (u->n_inputs >= MS_UNIT_MAX_INPUTS) return;
    snprintf(u->inputs[u->n_inputs].unit, sizeof u->inputs[0].unit, "%s", unit);
    snprintf(u->inputs[u->n_inputs].hash, sizeof u->inputs[0].hash, "%s", hash);
    u->n_inputs++;
}

static char *marker_path(const char *out_dir, const char *unit)
{
    char name[96];
    snprintf(name, sizeof name, "stages/%s.json", unit);
    return ms_path_join(out_dir, name);
}

bool app_unit_read(const char *out_dir, const char *unit, app_unit_record *r)
{
    memset(r, 0, sizeof *r);
    char *p = marker_path(out_dir, unit), *text = NULL;
    if (!p || ms_file_read_all(p, &text, NULL, NULL) != MS_OK) {
        free(p);
        return false;
    }
    free(p);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return false;
    const cJSON *state = cJSON_GetObjectItem(j, "state"), *hash = cJSON_GetObjectItem(j, "hash"),
                *keys = cJSON_GetObjectItem(j, "keys"), *inputs = cJSON_GetObjectItem(j, "inputs");
    bool ok = cJSON_IsString(state) && cJSON_IsString(hash) && cJSON_IsString(keys);
    if (ok) {
        r->complete = strcmp(state->valuestring, "complete") == 0;
        snprintf(r->hash, sizeof r->hash, "%s", hash->valuestring);
        r->keys = strdup(keys->valuestring);
        const cJSON *in;
        cJSON_ArrayForEach(in, inputs)
        {
            if (r->n_inputs >= MS_UNIT_MAX_INPUTS || !cJSON_IsString(in)) continue;
            snprintf(r->inputs[r->n_inputs].unit, sizeof r->inputs[0].unit, "%s", in->string);
            snprintf(r->inputs[r->n_inputs].hash, sizeof r->inputs[0].hash, "%s", in->valuestring);
            r->n_inputs++;
        }
        const cJSON *outs = cJSON_GetObjectItem(j, "outputs");
        r->has_outputs = cJSON_IsArray(outs);
        int n = r->has_outputs ? cJSON_GetArraySize(outs) : 0;
        r->outputs = n > 0 ? calloc((size_t)n, sizeof *r->outputs) : NULL;
        ok = ok && (n == 0 || r->outputs);
        const cJSON *o;
        cJSON_ArrayForEach(o, outs)
        {
            const cJSON *path = cJSON_GetObjectItem(o, "path"), *size = cJSON_GetObjectItem(o, "size"),
                        *mt = cJSON_GetObjectItem(o, "mtime_ns"), *sum = cJSON_GetObjectItem(o, "sha256");
            if (!ok || !cJSON_IsString(path) || !cJSON_IsNumber(size) || !cJSON_IsString(mt)) {
                ok = false; /* a damaged record: not trusted, the unit runs again */
                break;
            }
            app_unit_output *u = &r->outputs[r->n_outputs++];
            u->path = strdup(path->valuestring);
            u->size = (int64_t)size->valuedouble;
            u->mtime_ns = strtoll(mt->valuestring, NULL, 10);
            snprintf(u->sha256, sizeof u->sha256, "%s", cJSON_IsString(sum) ? sum->valuestring : "");
            ok = u->path != NULL;
        }
    }
    cJSON_Delete(j);
    if (!(ok && r->keys)) app_unit_record_free(r);
    return ok && r->keys;
}

void app_unit_record_free(app_unit_record *r)
{
    free(r->keys);
    r->keys = NULL;
    for (int i = 0; i < r->n_outputs; i++) free(r->outputs[i].path);
    free(r->outputs);
    r->outputs = NULL;
    r->n_outputs = 0;
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + (int64_t)sb->st_mtim.tv_nsec;
}

/* The outputs' sizes, mtimes and hashes as an array (NULL on a missing file: err says which). */
static cJSON *outputs_json(char *const *outputs, int n, ms_err *err)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        struct stat sb;
        if (stat(outputs[i], &sb) != 0 || !S_ISREG(sb.st_mode)) {
            ms_err_set(err, MS_ERR_STATE, "%s: the unit finished but this output is missing", outputs[i]);
            cJSON_Delete(a);
            return NULL;
        }
        char sum[65] = "";
        if ((int64_t)sb.st_size <= MS_UNIT_HASH_MAX && ms_sha256_file(outputs[i], sum, err)) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", outputs[i]);
        cJSON_AddNumberToObject(o, "size", (double)sb.st_size); /* exact below 2^53 bytes */
        char mt[24]; /* a string: nanoseconds since 1970 exceed a double's exact integers */
        snprintf(mt, sizeof mt, "%lld", (long long)mtime_ns(&sb));
        cJSON_AddStringToObject(o, "mtime_ns", mt);
        if (sum[0]) cJSON_AddStringToObject(o, "sha256", sum);
        cJSON_AddItemToArray(a, o);
    }
    if (!a) ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    return a;
}

bool app_unit_outputs_whole(const app_unit_record *r, char *why, size_t n)
{
    for (int i = 0; i < r->n_outputs; i++) {
        const app_unit_output *o = &r->outputs[i];
        struct stat sb;
        if (stat(o->path, &sb) != 0) {
            snprintf(why, n, "its output %s is gone", o->path);
            return false;
        }
        if ((int64_t)sb.st_size != o->size) {
            snprintf(why, n, "its output %s is %lld bytes, it made %lld (truncated or replaced)", o->path,
                     (long long)sb.st_size, (long long)o->size);
            return false;
        }
        bool rehash = o->sha256[0] && (o->size <= MS_UNIT_REHASH_MAX || mtime_ns(&sb) != o->mtime_ns);
        char sum[65];
        ms_err e = {0};
        if (rehash && (ms_sha256_file(o->path, sum, &e) || strcmp(sum, o->sha256) != 0)) {
            snprintf(why, n, "its output %s changed since the unit made it (%s)", o->path,
                     e.msg[0] ? e.msg : "sha256 differs");
            return false;
        }
        if (!o->sha256[0] && mtime_ns(&sb) != o->mtime_ns) {
            snprintf(why, n, "its output %s was modified since the unit made it (mtime)", o->path);
            return false;
        }
    }
    return true;
}

ms_status app_unit_write(const char *out_dir, const app_unit *u, bool complete, double seconds,
                        char *const *outputs, int n_outputs, ms_err *err)
{
    cJSON *outs = complete ? outputs_json(outputs, n_outputs, err) : NULL;
    if (complete && !outs) return err->status ? err->status : MS_ERR_NOMEM;
    char *dir = ms_path_join(out_dir, "stages"), *p = marker_path(out_dir, u->name);
    ms_status st = dir && p ? ms_mkdirs(dir, err) : ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "unit", u->name);
    cJSON_AddStringToObject(j, "stage", u->stage);
    cJSON_AddStringToObject(j, "state", complete ? "complete" : "started");
    cJSON_AddStringToObject(j, "hash", u->hash);
    cJSON_AddStringToObject(j, "keys", u->keys ? u->keys : "");
    cJSON *in = cJSON_AddObjectToObject(j, "inputs");
    for (int i = 0; i < u->n_inputs; i++) cJSON_AddStringToObject(in, u->inputs[i].unit, u->inputs[i].hash);
    if (complete) cJSON_AddNumberToObject(j, "seconds", seconds);
    if (outs) cJSON_AddItemToObject(j, "outputs", outs);
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(j, "time", when);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!st && !text) st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    if (!st) st = ms_file_write_atomic(p, text, strlen(text), err);
    cJSON_free(text);
    free(dir);
    free(p);
    return st;
}

/* The value of key in "key=value\n" lines, or NULL; *len its length. */
static const char *line_value(const char *text, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        if (strncmp(l, key, kl) == 0 && l[kl] == '=') {
            *len = nl ? (size_t)(nl - l - (ptrdiff_t)kl - 1) : strlen(l + kl + 1);
            return l + kl + 1;
        }
        l = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* Appends "k (a -> b)" for each key whose value differs (or that appears/disappears). */
static void diff_keys(const char *old, const char *new_, char *out, size_t n)
{
    int shown = 0, more = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *a = pass ? old : new_, *b = pass ? new_ : old;
        for (const char *l = a; l && *l;) {
            const char *nl = strchr(l, '\n'), *eq = strchr(l, '=');
            if (!eq || (nl && eq > nl)) break;
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(eq - l), l);
            size_t la = nl ? (size_t)(nl - eq - 1) : strlen(eq + 1), lb = 0;
            const char *vb = line_value(b, key, &lb);
            bool differs = !vb || la != lb || strncmp(eq + 1, vb, la) != 0;
            if (differs && (pass == 0 || !vb)) {
                if (shown < 3) {
                    size_t k = strlen(out);
                    if (pass == 0 && vb)
                        snprintf(out + k, n - k, "%s%s %.*s -> %.*s", shown ? ", " : "", key, (int)lb, vb, (int)la, eq + 1);
                    else
                        snprintf(out + k, n - k, "%s%s %s", shown ? ", " : "", key, pass ? "removed" : "added");
                    shown++;
                } else {
                    more++;
                }
            }
            l = nl ? nl + 1 : NULL;
        }
    }
    if (more) snprintf(out + strlen(out), n - strlen(out), " and %d more", more);
}

void app_unit_why(const app_unit *u, const app_unit_record *r, char *why, size_t n)
{
    why[0] = '\0';
    diff_keys(r->keys, u->keys ? u->keys : "", why, n);
    if (why[0]) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "changed %s", why);
        snprintf(why, n, "%s", tmp);
    }
    for (int i = 0; i < u->n_inputs; i++) {
        bool same = false;
        for (int k = 0; k < r->n_inputs; k++)
            if (strcmp(r->inputs[k].unit, u->inputs[i].unit) == 0) same = strcmp(r->inputs[k].hash, u->inputs[i].hash) == 0;
        if (!same) {
            size_t k = strlen(why);
            snprintf(why + k, n - k, "%sits input '%s' was made differently", k ? "; " : "", u->inputs[i].unit);
        }
    }
    if (!why[0]) snprintf(why, n, "its record's hash differs");
}
