/* What `monosem run` remembers of each unit of work (a stage for one model or one SAE):
 * <out_dir>/stages/<unit>.json holds the configuration keys the unit's outputs depend on, the
 * identities of its inputs (the hashes of the units that made them) and whether it finished,
 * so a rerun can skip it, resume it, or redo it and say why. Rank 0 only (plain files). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "run_state.h"

void ms_unit_hash(ms_unit *u)
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

void ms_unit_input(ms_unit *u, const char *unit, const char *hash)
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

bool ms_unit_read(const char *out_dir, const char *unit, ms_unit_record *r)
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
    }
    cJSON_Delete(j);
    return ok && r->keys;
}

void ms_unit_record_free(ms_unit_record *r)
{
    free(r->keys);
    r->keys = NULL;
}

ms_status ms_unit_write(const char *out_dir, const ms_unit *u, bool complete, double seconds, ms_err *err)
{
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

void ms_unit_why(const ms_unit *u, const ms_unit_record *r, char *why, size_t n)
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
