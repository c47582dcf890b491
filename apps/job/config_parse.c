/* The job file read: libyaml document -> ms_config through the field table (duplicate and unknown
 * keys with suggestions, nesting bound, one document), the saes: list, --key=value overrides. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_internal.h"

/* ------------------------------------------------------------------ YAML walk */

typedef struct walk {
    ms_config *cfg;
    yaml_document_t *doc;
    const char *name;
    ms_err *err;
    bool no_positions; /* command-line values: line:col would be meaningless */
} walk;

static const char *node_kind(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a sequence" : "a scalar";
}

static bool is_null_scalar(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int lev(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static ms_status unknown_key(walk *wk, const where *w, const char *key)
{
    /* suggest a known name with as many dotted parts as the unknown one */
    int parts = 1;
    for (const char *p = key; *p; p++) parts += *p == '.';
    const char *best = NULL;
    int best_len = 0, bd = 3;
    for (int i = 0; i < N_FIELDS; i++) {
        const char *k = cfg_fields[i].key;
        int seen = 0, len = 0;
        while (k[len] && !(k[len] == '.' && ++seen == parts)) len++;
        char cand[128];
        snprintf(cand, sizeof cand, "%.*s", len, k);
        int d = lev(key, cand);
        if (d < bd) bd = d, best = k, best_len = len;
    }
    if (best) return cfg_where_err(wk->err, w, "unknown key '%s' (did you mean '%.*s'?)", key, best_len, best);
    return cfg_where_err(wk->err, w, "unknown key '%s'", key);
}

static ms_status set_node(walk *wk, const field *f, yaml_node_t *v, const where *kw)
{
    ms_config *cfg = wk->cfg;
    where w = {wk->name, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1};
    if (wk->no_positions) w.line = w.col = 0;
    int idx = cfg_field_index(f);
    if (cfg->marks[2 * idx] != 0)
        return cfg_where_err(wk->err, kw, "duplicate key '%s' (first set at %d:%d)", f->key, cfg->marks[2 * idx],
                         cfg->marks[2 * idx + 1]);
    cfg->marks[2 * idx] = kw->line;
    cfg->marks[2 * idx + 1] = kw->col;
    bool list = f->type == F_STRLIST || f->type == F_INTLIST;
    if (list) cfg_field_clear(cfg, f);
    if (v->type == YAML_SCALAR_NODE) {
        if (is_null_scalar(v)) {
            if (f->type == F_STR) return cfg_set_scalar(cfg, f, "", &w, wk->err);
            if (list) return MS_OK; /* empty list */
            return cfg_bad_value(wk->err, &w, f, "null");
        }
        return cfg_set_scalar(cfg, f, (const char *)v->data.scalar.value, &w, wk->err);
    }
    if (v->type == YAML_SEQUENCE_NODE && list) {
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(wk->doc, *it);
            where ew = {wk->name, (int)e->start_mark.line + 1, (int)e->start_mark.column + 1};
            if (wk->no_positions) ew.line = ew.col = 0;
            if (e->type != YAML_SCALAR_NODE) {
                char exp[256];
                cfg_describe(f, exp, sizeof exp);
                return cfg_where_err(wk->err, &ew, "key '%s': expected %s, got %s inside the list", f->key, exp, node_kind(e));
            }
            ms_status st = cfg_set_scalar(cfg, f, (const char *)e->data.scalar.value, &ew, wk->err);
            if (st) return st;
        }
        return MS_OK;
    }
    char exp[256];
    cfg_describe(f, exp, sizeof exp);
    return cfg_where_err(wk->err, &w, "key '%s': expected %s, got %s", f->key, exp, node_kind(v));
}

/* One mapping pair: its key's name, its value and the key's place; an error if the key is not a scalar. */
static ms_status pair_key(walk *wk, const yaml_node_pair_t *p, const char **kname, yaml_node_t **v, where *kw)
{
    yaml_node_t *k = yaml_document_get_node(wk->doc, p->key);
    *v = yaml_document_get_node(wk->doc, p->value);
    *kw = (where){wk->name, (int)k->start_mark.line + 1, (int)k->start_mark.column + 1};
    if (k->type != YAML_SCALAR_NODE) return cfg_where_err(wk->err, kw, "expected a key name, got %s", node_kind(k));
    *kname = (const char *)k->data.scalar.value;
    return MS_OK;
}

static ms_status parse_saes(walk *wk, yaml_node_t *v, const where *kw);

static ms_status walk_mapping(walk *wk, yaml_node_t *map, const char *prefix)
{
    /* duplicate keys inside one mapping are caught here even for sections */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        where kw;
        const char *kname = NULL;
        ms_status kst = pair_key(wk, p, &kname, &v, &kw);
        if (kst) return kst;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(wk->doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && strcmp((const char *)k2->data.scalar.value, kname) == 0)
                return cfg_where_err(wk->err, &kw, "duplicate key '%s%s%s' (first set at %d:%d)", prefix, *prefix ? "." : "",
                                 kname, (int)k2->start_mark.line + 1, (int)k2->start_mark.column + 1);
        }
        char full[256];
        snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", kname);
        const field *f = cfg_field_find(full);
        if (f) {
            ms_status st = set_node(wk, f, v, &kw);
            if (st) return st;
        } else if (strcmp(full, "saes") == 0) {
            ms_status st = parse_saes(wk, v, &kw);
            if (st) return st;
        } else if (cfg_is_section(full)) {
            if (is_null_scalar(v)) continue; /* "eval:" with nothing under it: all defaults */
            if (v->type != YAML_MAPPING_NODE)
                return cfg_where_err(wk->err, &kw, "key '%s': expected a mapping of its keys, got %s", full, node_kind(v));
            ms_status st = walk_mapping(wk, v, full);
            if (st) return st;
        } else {
            return unknown_key(wk, &kw, full);
        }
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ the saes: list */

/* "key=value" override text of an (already validated) node for field f. */
static char *entry_override(const walk *wk, const field *f, yaml_node_t *v)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool str = f->type == F_STR || f->type == F_STRLIST;
    bool ok = cfg_sb_add(&buf, &len, &cap, f->key) && cfg_sb_add(&buf, &len, &cap, "=");
    if (v->type == YAML_SEQUENCE_NODE) {
        ok = ok && cfg_sb_add(&buf, &len, &cap, "[");
        for (yaml_node_item_t *it = v->data.sequence.items.start; ok && it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(wk->doc, *it);
            if (it > v->data.sequence.items.start) ok = cfg_sb_add(&buf, &len, &cap, ", ");
            ok = ok && cfg_sb_scalar(&buf, &len, &cap, (const char *)e->data.scalar.value, str);
        }
        ok = ok && cfg_sb_add(&buf, &len, &cap, "]");
    } else if (is_null_scalar(v)) {
        ok = ok && cfg_sb_add(&buf, &len, &cap, f->type == F_STR ? "''" : (f->type == F_STRLIST || f->type == F_INTLIST) ? "[]" : "~");
    } else {
        ok = ok && cfg_sb_scalar(&buf, &len, &cap, (const char *)v->data.scalar.value, str);
    }
    if (!ok) free(buf);
    return ok ? buf : NULL;
}

/* The keys of one entry (a mapping under `prefix`, "sae" or "sae.resample"): each is checked
 * against the field table by setting it on a scratch config (types, ranges, duplicates with
 * file:line:col), then kept as an override. */
static ms_status entry_keys(walk *wk, ms_sae_entry *e, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        where kw;
        const char *kname = NULL;
        ms_status kst = pair_key(wk, p, &kname, &v, &kw);
        if (kst) return kst;
        if (strcmp(prefix, "sae") == 0 && (strcmp(kname, "name") == 0 || strcmp(kname, "model") == 0)) {
            if (v->type != YAML_SCALAR_NODE || is_null_scalar(v))
                return cfg_where_err(wk->err, &kw, "key 'saes.%s': expected %s, got %s", kname,
                                 kname[0] == 'n' ? "a name" : "A, B or R", is_null_scalar(v) ? "nothing" : node_kind(v));
            const char *val = (const char *)v->data.scalar.value;
            where vw = {wk->name, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1};
            if (kname[0] == 'm') {
                if (strcasecmp(val, "A") != 0 && strcasecmp(val, "B") != 0 && strcasecmp(val, "R") != 0)
                    return cfg_where_err(wk->err, &vw, "key 'saes.model': expected A, B or R (the control), got \"%s\"",
                                     val);
                e->model = strcasecmp(val, "B") == 0 ? 1 : strcasecmp(val, "R") == 0 ? 2 : 0;
                continue;
            }
            bool good = *val && strlen(val) < 48;
            for (const char *c = val; *c && good; c++) good = isalnum((unsigned char)*c) || strchr("_.-", *c);
            if (!good || val[0] == '.')
                return cfg_where_err(wk->err, &vw, "key 'saes.name': expected a name of letters, digits, '_', '.', '-' "
                                 "(at most 47, used in directory names), got \"%s\"", val);
            if (e->name) return cfg_where_err(wk->err, &kw, "duplicate key 'saes.name' in one entry");
            if (!(e->name = strdup(val))) return ms_err_set(wk->err, MS_ERR_NOMEM, "out of memory");
            continue;
        }
        char full[256];
        snprintf(full, sizeof full, "%s.%s", prefix, kname);
        const field *f = cfg_field_find(full);
        if (f) {
            ms_status st = set_node(wk, f, v, &kw);
            if (st) return st;
            char *o = entry_override(wk, f, v);
            char **a = o ? realloc(e->set, sizeof *a * (size_t)(e->n_set + 1)) : NULL;
            if (!a) {
                free(o);
                return ms_err_set(wk->err, MS_ERR_NOMEM, "out of memory");
            }
            e->set = a;
            e->set[e->n_set++] = o;
        } else if (cfg_is_section(full) && v->type == YAML_MAPPING_NODE) {
            ms_status st = entry_keys(wk, e, v, full);
            if (st) return st;
        } else if (cfg_is_section(full)) {
            return cfg_where_err(wk->err, &kw, "key '%s': expected a mapping of its keys, got %s", full, node_kind(v));
        } else {
            return unknown_key(wk, &kw, full);
        }
    }
    return MS_OK;
}

void cfg_entry_free(ms_sae_entry *e)
{
    free(e->name);
    for (int i = 0; i < e->n_set; i++) free(e->set[i]);
    free(e->set);
    memset(e, 0, sizeof *e);
}

/* saes: a list of mappings, each a name, an optional model (A | B) and keys of the sae
 * section that this SAE sets differently. */
static ms_status parse_saes(walk *wk, yaml_node_t *v, const where *kw)
{
    if (is_null_scalar(v)) return MS_OK;
    if (v->type != YAML_SEQUENCE_NODE)
        return cfg_where_err(wk->err, kw, "key 'saes': expected a list of mappings (- name: A0, d_sae: 512), got %s",
                         node_kind(v));
    ms_config *cfg = wk->cfg;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *m = yaml_document_get_node(wk->doc, *it);
        where ew = {wk->name, (int)m->start_mark.line + 1, (int)m->start_mark.column + 1};
        if (m->type != YAML_MAPPING_NODE)
            return cfg_where_err(wk->err, &ew, "key 'saes': expected each entry to be a mapping (name: ..., d_sae: ...), got %s",
                             node_kind(m));
        ms_sae_entry *a = realloc(cfg->saes, sizeof *a * (size_t)(cfg->n_saes + 1));
        if (!a) return ms_err_set(wk->err, MS_ERR_NOMEM, "out of memory");
        cfg->saes = a;
        ms_sae_entry *e = &cfg->saes[cfg->n_saes++];
        memset(e, 0, sizeof *e);
        e->line = ew.line, e->col = ew.col;
        /* duplicates inside the entry, and values checked by type, on a scratch config */
        ms_config scratch;
        ms_status st = cfg_start(&scratch, wk->name, wk->err);
        if (!st) {
            walk sw = *wk;
            sw.cfg = &scratch;
            st = entry_keys(&sw, e, m, "sae");
        }
        scratch.saes = NULL, scratch.n_saes = 0;
        ms_config_free(&scratch);
        if (st) return st;
        if (!e->name) return cfg_where_err(wk->err, &ew, "saes entry %d: missing key 'name'", cfg->n_saes);
        for (int j = 0; j + 1 < cfg->n_saes; j++)
            if (strcmp(cfg->saes[j].name, e->name) == 0)
                return cfg_where_err(wk->err, &ew, "saes entry %d: duplicate name '%s' (first at %d:%d)", cfg->n_saes,
                                 e->name, cfg->saes[j].line, cfg->saes[j].col);
    }
    return MS_OK;
}

/* ------------------------------------------------------------------ documents and overrides */

static ms_status yaml_error(const yaml_parser_t *p, const char *name, ms_err *err)
{
    where w = {name, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1};
    const char *prob = p->problem ? p->problem : "cannot parse";
    if (p->context)
        return cfg_where_err(err, &w, "malformed YAML: %s %s", prob, p->context);
    return cfg_where_err(err, &w, "malformed YAML: %s", prob);
}

/* Deepest nesting of mappings/sequences a job file may have (it needs 4: sae: resample: at: [..]).
 * Checked on the event stream before a document is built: libyaml's cost grows with the square
 * of the depth (100k nested maps took 37 s to be refused) and the walk recurses per level. */
#define MAX_DEPTH 32

static ms_status check_depth(const char *name, const char *text, size_t len, ms_err *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ms_status st = MS_OK;
    int depth = 0;
    for (bool done = false; !done && !st;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = yaml_error(&parser, name, err);
            break;
        }
        if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT) {
            if (++depth > MAX_DEPTH) {
                where w = {name, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1};
                st = cfg_where_err(err, &w, "nesting deeper than %d levels (a job file needs at most 4)", MAX_DEPTH);
            }
        } else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return st;
}

/* Parses one YAML text into a document; the caller deletes it. */
ms_status cfg_load_doc(yaml_document_t *doc, const char *name, const char *text, size_t len, ms_err *err)
{
    ms_status dst = check_depth(name, text, len, err);
    if (dst) return dst;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ms_status st = MS_OK;
    if (!yaml_parser_load(&parser, doc)) {
        st = yaml_error(&parser, name, err);
        yaml_parser_delete(&parser);
        return st;
    }
    /* a second document would be silently ignored: refuse it */
    yaml_document_t extra;
    if (yaml_parser_load(&parser, &extra)) {
        if (yaml_document_get_root_node(&extra)) {
            where w = {name, (int)extra.start_mark.line + 1, (int)extra.start_mark.column + 1};
            st = cfg_where_err(err, &w, "expected a single YAML document, found another");
        }
        yaml_document_delete(&extra);
    } else {
        st = yaml_error(&parser, name, err);
    }
    yaml_parser_delete(&parser);
    if (st) yaml_document_delete(doc);
    return st;
}

static ms_status apply_override(ms_config *cfg, const char *ov, ms_err *err)
{
    const char *s = ov;
    while (*s == '-') s++;
    const char *eq = strchr(s, '=');
    where w = {"command line", 0, 0};
    if (!eq || eq == s) return cfg_where_err(err, &w, "override '%s': expected --key=value", ov);
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - s), s);
    const field *f = cfg_field_find(key);
    if (!f) {
        walk wk = {cfg, NULL, "command line", err, true};
        return unknown_key(&wk, &w, key);
    }
    const char *val = eq + 1;
    yaml_document_t doc;
    char name[300];
    snprintf(name, sizeof name, "command line (--%s)", key);
    ms_status st = cfg_load_doc(&doc, name, val, strlen(val), err);
    if (st) return st;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int idx = cfg_field_index(f);
    int32_t saved[2] = {cfg->marks[2 * idx], cfg->marks[2 * idx + 1]};
    cfg->marks[2 * idx] = 0; /* an override replaces the file's value: not a duplicate */
    walk wk = {cfg, &doc, "command line", err, true};
    if (!root) {
        yaml_node_t empty = {.type = YAML_SCALAR_NODE};
        empty.data.scalar.value = (yaml_char_t *)"";
        empty.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
        st = set_node(&wk, f, &empty, &w);
    } else {
        st = set_node(&wk, f, root, &w);
    }
    /* keep the file position if there was one; -1 marks "set on the command line" */
    cfg->marks[2 * idx] = saved[0] ? saved[0] : -1;
    cfg->marks[2 * idx + 1] = saved[1];
    yaml_document_delete(&doc);
    return st;
}

/* derived: parsing for ms_config_derive_* (the entries were checked by the base parse). */
ms_status cfg_parse(ms_config *cfg, const char *name, const char *text, size_t len,
                    const char *const *overrides, int n_overrides, const char *const *required,
                    bool derived, ms_err *err)
{
    ms_status st = cfg_start(cfg, name, err);
    if (st) goto fail;
    /* keep the job as given: an entry's config is re-derived from it */
    if (!(cfg->src = malloc(len + 1)) || (n_overrides && !(cfg->ovr = calloc((size_t)n_overrides, sizeof *cfg->ovr)))) {
        st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (len) memcpy(cfg->src, text, len);
    cfg->src[len] = '\0';
    cfg->src_len = len;
    for (int i = 0; i < n_overrides; i++, cfg->n_ovr++)
        if (!(cfg->ovr[i] = strdup(overrides[i]))) {
            st = ms_err_set(err, MS_ERR_NOMEM, "out of memory");
            goto fail;
        }
    yaml_document_t doc;
    if ((st = cfg_load_doc(&doc, cfg->path, text, len, err))) goto fail;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null_scalar(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            where w = {cfg->path, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1};
            st = cfg_where_err(err, &w, "expected a mapping of sections (run:, corpus:, sae:, ...), got %s", node_kind(root));
        } else {
            walk wk = {cfg, &doc, cfg->path, err, false};
            st = walk_mapping(&wk, root, "");
        }
    }
    yaml_document_delete(&doc);
    if (st) goto fail;
    for (int i = 0; i < n_overrides; i++)
        if ((st = apply_override(cfg, overrides[i], err))) goto fail;
    if ((st = ms_config_check_required(cfg, required, err))) goto fail;
    cfg->derived = derived;
    if ((st = cfg_finish(cfg, err))) goto fail;
    if (!derived && (st = cfg_check_entries(cfg, err))) goto fail;
    return MS_OK;
fail:
    ms_config_free(cfg);
    return st;
}

ms_status ms_config_parse(ms_config *cfg, const char *name, const char *text, size_t len,
                          const char *const *overrides, int n_overrides, const char *const *required,
                          ms_err *err)
{
    return cfg_parse(cfg, name, text, len, overrides, n_overrides, required, false, err);
}
