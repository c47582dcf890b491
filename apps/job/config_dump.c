/* The resolved job as text: the YAML dump (and the mapping the run record embeds), key subsets
 * for `monosem run`'s skip/redo decisions, and the result keys that checkpoints store and compare. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_emit.h"
#include "config_internal.h"

/* ------------------------------------------------------------------ text building */

/* Appends to a growing string; false on OOM. */
bool cfg_sb_add(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t c = (*cap ? *cap * 2 : 64) + n;
        char *b = realloc(*buf, c);
        if (!b) return false;
        *buf = b, *cap = c;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return true;
}

/* A scalar as YAML flow text that reads back as the same value: strings single-quoted. */
bool cfg_sb_scalar(char **buf, size_t *len, size_t *cap, const char *v, bool quote)
{
    if (!quote) return cfg_sb_add(buf, len, cap, v);
    bool ok = cfg_sb_add(buf, len, cap, "'");
    for (const char *p = v; *p && ok; p++) ok = cfg_sb_add(buf, len, cap, *p == '\'' ? "''" : (char[2]){*p, 0});
    return ok && cfg_sb_add(buf, len, cap, "'");
}

/* Shortest decimal text that reads back as the same double. */
static void fmt_real(double v, char *buf, size_t n)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* 30 prints as "3e+01" above; people write 30.0 */
    if (strchr(buf, 'e') && fabs(v) >= 1e-4 && fabs(v) < 1e15)
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, n, "%.*f", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
    /* keep it a float in YAML's eyes */
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
}

/* ------------------------------------------------------------------ key subsets */

/* A field's value as one line of text (lists comma-separated). */
static void field_text(const ms_config *cfg, const field *f, char **buf, size_t *len, size_t *cap, bool *ok)
{
    char tmp[64];
    switch (f->type) {
    case F_STR:
        *ok = *ok && cfg_sb_add(buf, len, cap, *AT(cfg, f->off, char *const));
        break;
    case F_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)*AT(cfg, f->off, const int64_t));
        *ok = *ok && cfg_sb_add(buf, len, cap, tmp);
        break;
    case F_REAL:
        fmt_real(*AT(cfg, f->off, const double), tmp, sizeof tmp);
        *ok = *ok && cfg_sb_add(buf, len, cap, tmp);
        break;
    case F_BOOL:
        *ok = *ok && cfg_sb_add(buf, len, cap, *AT(cfg, f->off, const bool) ? "true" : "false");
        break;
    case F_ENUM:
        *ok = *ok && cfg_sb_add(buf, len, cap, f->choices[*AT(cfg, f->off, const int)]);
        break;
    case F_STRLIST:
    case F_INTLIST: {
        int n = *AT(cfg, f->off_n, const int);
        for (int i = 0; i < n; i++) {
            if (i) *ok = *ok && cfg_sb_add(buf, len, cap, ",");
            if (f->type == F_STRLIST) {
                *ok = *ok && cfg_sb_add(buf, len, cap, (*AT(cfg, f->off, char **const))[i]);
            } else {
                snprintf(tmp, sizeof tmp, "%lld", (long long)(*AT(cfg, f->off, int64_t *const))[i]);
                *ok = *ok && cfg_sb_add(buf, len, cap, tmp);
            }
        }
        break;
    }
    }
}

static bool key_matches(const char *key, const char *const *list)
{
    for (int i = 0; list && list[i]; i++) {
        size_t n = strlen(list[i]);
        if (strncmp(key, list[i], n) == 0 && (key[n] == '\0' || key[n] == '.' || list[i][n - 1] == '.')) return true;
    }
    return false;
}

char *ms_config_subset(const ms_config *cfg, const char *const *prefixes, const char *const *exclude)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool ok = cfg_sb_add(&buf, &len, &cap, "");
    for (int i = 0; i < N_FIELDS && ok; i++) {
        const field *f = &cfg_fields[i];
        if (!key_matches(f->key, prefixes) || key_matches(f->key, exclude)) continue;
        ok = cfg_sb_add(&buf, &len, &cap, f->key) && cfg_sb_add(&buf, &len, &cap, "=");
        field_text(cfg, f, &buf, &len, &cap, &ok);
        ok = ok && cfg_sb_add(&buf, &len, &cap, "\n");
    }
    if (!ok) free(buf);
    return ok ? buf : NULL;
}
/* ------------------------------------------------------------------ dump */

typedef struct emit_ctx {
    yaml_emitter_t *em;
    bool ok;
} emit_ctx;

static void ev_scalar(emit_ctx *e, const char *s, bool plain)
{
    yaml_event_t ev;
    if (!e->ok) return;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), plain, 1,
                                 plain ? YAML_ANY_SCALAR_STYLE : YAML_SINGLE_QUOTED_SCALAR_STYLE);
    e->ok = yaml_emitter_emit(e->em, &ev) != 0;
}

static void ev_simple(emit_ctx *e, int kind)
{
    yaml_event_t ev;
    if (!e->ok) return;
    switch (kind) {
    case 0: yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE); break;
    case 1: yaml_mapping_end_event_initialize(&ev); break;
    case 2: yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE); break;
    case 4: yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE); break;
    default: yaml_sequence_end_event_initialize(&ev); break;
    }
    e->ok = yaml_emitter_emit(e->em, &ev) != 0;
}

/* A string that a YAML reader would take for a non-string must be quoted. */
static bool needs_quotes(const char *s)
{
    if (!*s) return true;
    int64_t i;
    double d;
    bool b;
    return cfg_parse_int(s, &i) || cfg_parse_real(s, &d) || cfg_parse_bool(s, &b) || strcmp(s, "~") == 0 ||
           strcasecmp(s, "null") == 0;
}

static void emit_value(emit_ctx *e, const ms_config *cfg, const field *f)
{
    char buf[64];
    switch (f->type) {
    case F_STR: {
        const char *s = *AT(cfg, f->off, char *const);
        ev_scalar(e, s, !needs_quotes(s));
        break;
    }
    case F_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)*AT(cfg, f->off, const int64_t));
        ev_scalar(e, buf, true);
        break;
    case F_REAL:
        fmt_real(*AT(cfg, f->off, const double), buf, sizeof buf);
        ev_scalar(e, buf, true);
        break;
    case F_BOOL:
        ev_scalar(e, *AT(cfg, f->off, const bool) ? "true" : "false", true);
        break;
    case F_ENUM:
        ev_scalar(e, f->choices[*AT(cfg, f->off, const int)], true);
        break;
    case F_STRLIST: {
        char *const *v = *AT(cfg, f->off, char **const);
        int n = *AT(cfg, f->off_n, const int);
        ev_simple(e, 2);
        for (int i = 0; i < n; i++) ev_scalar(e, v[i], !needs_quotes(v[i]));
        ev_simple(e, 3);
        break;
    }
    case F_INTLIST: {
        const int64_t *v = *AT(cfg, f->off, int64_t *const);
        int n = *AT(cfg, f->off_n, const int);
        ev_simple(e, 2);
        for (int i = 0; i < n; i++) {
            snprintf(buf, sizeof buf, "%lld", (long long)v[i]);
            ev_scalar(e, buf, true);
        }
        ev_simple(e, 3);
        break;
    }
    }
}

static int write_handler(void *data, unsigned char *buf, size_t size)
{
    FILE *f = data;
    return fwrite(buf, 1, size, f) == size;
}

/* One override value ("[a, b]" or a scalar, as entry_override wrote it) re-read and emitted. */
static void emit_override_value(emit_ctx *e, const char *text)
{
    yaml_document_t doc;
    if (cfg_load_doc(&doc, "saes", text, strlen(text), NULL)) {
        e->ok = false;
        return;
    }
    yaml_node_t *r = yaml_document_get_root_node(&doc);
    if (r && r->type == YAML_SEQUENCE_NODE) {
        ev_simple(e, 2);
        for (yaml_node_item_t *it = r->data.sequence.items.start; it < r->data.sequence.items.top; it++) {
            const yaml_node_t *item = yaml_document_get_node(&doc, *it);
            const char *v = (const char *)item->data.scalar.value;
            ev_scalar(e, v, item->data.scalar.style == YAML_PLAIN_SCALAR_STYLE || !needs_quotes(v));
        }
        ev_simple(e, 3);
    } else {
        const char *v = r && r->type == YAML_SCALAR_NODE ? (const char *)r->data.scalar.value : "";
        bool plain = r && r->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        ev_scalar(e, v, plain || !needs_quotes(v));
    }
    yaml_document_delete(&doc);
}

/* saes: one block mapping per entry (name, model, its keys; sae.resample.* nested). */
static void emit_saes(emit_ctx *e, const ms_config *cfg)
{
    ev_scalar(e, "saes", true);
    ev_simple(e, 4);
    for (int i = 0; i < cfg->n_saes; i++) {
        const ms_sae_entry *en = &cfg->saes[i];
        ev_simple(e, 0);
        ev_scalar(e, "name", true);
        ev_scalar(e, en->name, !needs_quotes(en->name));
        ev_scalar(e, "model", true);
        ev_scalar(e, en->model == 1 ? "B" : en->model == 2 ? "R" : "A", true);
        char open[64] = "";
        for (int k = 0; k < en->n_set; k++) {
            const char *kv = en->set[k] + 4; /* after "sae." */
            const char *eq = strchr(kv, '='), *dot = strchr(kv, '.');
            char sect[64] = "";
            if (dot && dot < eq) snprintf(sect, sizeof sect, "%.*s", (int)(dot - kv), kv);
            if (strcmp(sect, open) != 0) {
                if (open[0]) ev_simple(e, 1);
                if (sect[0]) ev_scalar(e, sect, true), ev_simple(e, 0);
                snprintf(open, sizeof open, "%s", sect);
            }
            const char *leaf = sect[0] ? dot + 1 : kv;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - leaf), leaf);
            ev_scalar(e, name, true);
            emit_override_value(e, eq + 1);
        }
        if (open[0]) ev_simple(e, 1);
        ev_simple(e, 1);
    }
    ev_simple(e, 3);
}

/* Emits the fields as nested block mappings, opening/closing levels as the dotted prefix
 * changes between consecutive keys. */
bool ms_config_emit_mapping(const ms_config *cfg, yaml_emitter_t *em)
{
    emit_ctx e = {.em = em, .ok = true};
    ev_simple(&e, 0);
    char open[8][64];
    int depth = 0;
    for (int i = 0; i < N_FIELDS && e.ok; i++) {
        char parts[8][64];
        int np = 0;
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", cfg_fields[i].key);
        for (char *save = NULL, *t = strtok_r(tmp, ".", &save); t && np < 8; t = strtok_r(NULL, ".", &save))
            snprintf(parts[np++], 64, "%s", t);
        int common = 0;
        while (common < depth && common < np - 1 && strcmp(open[common], parts[common]) == 0) common++;
        while (depth > common) ev_simple(&e, 1), depth--;
        while (depth < np - 1) {
            ev_scalar(&e, parts[depth], true);
            ev_simple(&e, 0);
            snprintf(open[depth], 64, "%s", parts[depth]);
            depth++;
        }
        ev_scalar(&e, parts[np - 1], true);
        emit_value(&e, cfg, &cfg_fields[i]);
    }
    while (depth > 0) ev_simple(&e, 1), depth--;
    if (cfg->n_saes > 0) emit_saes(&e, cfg);
    ev_simple(&e, 1);
    return e.ok;
}

static bool emit_config(const ms_config *cfg, yaml_emitter_t *em)
{
    emit_ctx e = {.em = em, .ok = true};
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    if (e.ok) {
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
        e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    }
    e.ok = e.ok && ms_config_emit_mapping(cfg, em);
    if (e.ok) {
        yaml_document_end_event_initialize(&ev, 1);
        e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    }
    if (e.ok) {
        yaml_stream_end_event_initialize(&ev);
        e.ok = yaml_emitter_emit(e.em, &ev) != 0;
    }
    return e.ok;
}

ms_status ms_config_dump(const ms_config *cfg, FILE *f, ms_err *err)
{
    yaml_emitter_t em;
    if (!yaml_emitter_initialize(&em)) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    yaml_emitter_set_output(&em, write_handler, f);
    yaml_emitter_set_width(&em, 1000);
    yaml_emitter_set_unicode(&em, 1);
    bool ok = emit_config(cfg, &em);
    yaml_emitter_delete(&em);
    return ok ? MS_OK : ms_err_set(err, MS_ERR_IO, "cannot write the resolved config");
}

char *ms_config_dump_string(const ms_config *cfg)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    ms_status st = ms_config_dump(cfg, f, NULL);
    if (fclose(f) != 0 || st != MS_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ------------------------------------------------------------------ resume checks */

static bool in_scopes(const char *key, const char *const *scopes)
{
    for (int i = 0; scopes && scopes[i]; i++) {
        size_t n = strlen(scopes[i]);
        if (n && scopes[i][n - 1] == '.' ? strncmp(key, scopes[i], n) == 0 : strcmp(key, scopes[i]) == 0)
            return true;
    }
    return false;
}

/* One field's value as canonical one-line text (lists comma-separated in brackets). */
static void value_text(const ms_config *cfg, const field *f, FILE *o)
{
    char buf[64];
    switch (f->type) {
    case F_STR:
        for (const char *p = *AT(cfg, f->off, char *const); *p; p++)
            fputs(*p == '\n' ? "\\n" : *p == '\\' ? "\\\\" : (char[2]){*p, 0}, o);
        break;
    case F_INT:
        fprintf(o, "%lld", (long long)*AT(cfg, f->off, const int64_t));
        break;
    case F_REAL:
        fmt_real(*AT(cfg, f->off, const double), buf, sizeof buf);
        fputs(buf, o);
        break;
    case F_BOOL:
        fputs(*AT(cfg, f->off, const bool) ? "true" : "false", o);
        break;
    case F_ENUM:
        fputs(f->choices[*AT(cfg, f->off, const int)], o);
        break;
    case F_STRLIST:
    case F_INTLIST: {
        int n = *AT(cfg, f->off_n, const int);
        fputc('[', o);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", o);
            if (f->type == F_STRLIST)
                fputs((*AT(cfg, f->off, char **const))[i], o);
            else
                fprintf(o, "%lld", (long long)(*AT(cfg, f->off, int64_t *const))[i]);
        }
        fputc(']', o);
        break;
    }
    }
}

char *ms_config_result_keys(const ms_config *cfg, const char *const *scopes)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *o = open_memstream(&buf, &n);
    if (!o) return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &cfg_fields[i];
        if (f->harmless || !in_scopes(f->key, scopes)) continue;
        fprintf(o, "%s=", f->key);
        value_text(cfg, f, o);
        fputc('\n', o);
    }
    if (fclose(o) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

ms_status ms_config_result_diff(const ms_config *cfg, const char *const *scopes, const char *saved,
                                const char *what, const char *hint, ms_err *err)
{
    char *now = ms_config_result_keys(cfg, scopes);
    if (!now) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    char list[900];
    size_t k = 0;
    int n_changed = 0;
    list[0] = '\0';
    /* every key selected now, looked up in the saved text (a key absent there was added to
     * the table since: it counts as changed only if this job sets it to a non-default value) */
    for (char *line = now, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = '\0';
        char *eq = strchr(line, '=');
        size_t klen = (size_t)(eq - line);
        const char *old = NULL;
        size_t olen = 0;
        for (const char *p = saved; p && *p;) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len > klen && strncmp(p, line, klen) == 0 && p[klen] == '=') {
                old = p + klen + 1;
                olen = len - klen - 1;
                break;
            }
            p = e ? e + 1 : p + len;
        }
        if (!old) {
            *eq = '\0';
            const field *f = cfg_field_find(line);
            *eq = '=';
            if (!f || cfg->marks[2 * cfg_field_index(f)] == 0) continue; /* not set: default behaviour */
            /* the default's text, through the same formatter */
            char *dbuf = NULL;
            size_t dn = 0;
            FILE *o = open_memstream(&dbuf, &dn);
            ms_config tmp;
            memset(&tmp, 0, sizeof tmp);
            bool same = false;
            if (o && cfg_set_default(&tmp, f, NULL) == MS_OK) {
                value_text(&tmp, f, o);
                fclose(o);
                o = NULL;
                same = strcmp(dbuf, eq + 1) == 0;
            }
            if (o) fclose(o);
            cfg_field_clear(&tmp, f);
            free(dbuf);
            if (same) continue;
            old = "(unset)";
            olen = strlen(old);
        } else if (strlen(eq + 1) == olen && strncmp(old, eq + 1, olen) == 0) {
            continue;
        }
        n_changed++;
        if (k < sizeof list)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%.*s %.*s -> %s", n_changed > 1 ? ", " : "",
                                  (int)klen, line, (int)(olen > 60 ? 60 : olen), old, eq + 1);
    }
    free(now);
    if (n_changed == 0) return MS_OK;
    return ms_err_set(err, MS_ERR_STATE, "%s: changed since the checkpoint: %s%s (%s)", what, list,
                      k >= sizeof list ? "..." : "", hint);
}
