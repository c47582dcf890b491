/* apps/job/config_internal.h: private to msjob — the field table's types and what the config_*.c
 * files share (field access, scalar conversion, positioned errors, text building, parse/resolve). */
#ifndef MONOSEM_JOB_CONFIG_INTERNAL_H
#define MONOSEM_JOB_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "monosem/job.h"

typedef enum { F_STR, F_INT, F_REAL, F_BOOL, F_ENUM, F_STRLIST, F_INTLIST } ftype;

typedef struct field {
    const char *key; /* dotted, as in the job file */
    ftype type;
    size_t off;   /* offset of the value in ms_config */
    size_t off_n; /* lists: offset of the int element count */
    double min, max;
    const char *def; /* default as scalar text; lists: comma-separated items */
    const char *const *choices; /* enums: names, index = value */
    const char *help;
    bool harmless; /* cannot change a result: cadence, paths, threads (ms_config_result_keys) */
} field;

/* The job file, key by key (config_fields.c). Order = dump order. */
extern const field cfg_fields[];
extern const int cfg_n_fields;
#define N_FIELDS cfg_n_fields

#define AT(cfg, off, T) ((T *)((char *)(cfg) + (off)))

/* Where a value came from, for messages. */
typedef struct where {
    const char *name; /* file name, or "command line" */
    int line, col;    /* 1-based; 0 = no position */
} where;

/* --- field access and scalar conversion (config_fields.c) */
const field *cfg_field_find(const char *key);
int cfg_field_index(const field *f);
bool cfg_is_section(const char *prefix); /* some key starts with prefix + "." */
void cfg_field_clear(ms_config *cfg, const field *f);
void cfg_describe(const field *f, char *buf, size_t n); /* what f expects: "a positive integer" */
bool cfg_parse_int(const char *s, int64_t *out);
bool cfg_parse_real(const char *s, double *out);
bool cfg_parse_bool(const char *s, bool *out);
ms_status cfg_where_err(ms_err *err, const where *w, const char *fmt, ...) MS_PRINTF(3, 4);
ms_status cfg_bad_value(ms_err *err, const where *w, const field *f, const char *got);
/* Converts one scalar into field f (for lists: appends one element). */
ms_status cfg_set_scalar(ms_config *cfg, const field *f, const char *s, const where *w, ms_err *err);
ms_status cfg_set_default(ms_config *cfg, const field *f, ms_err *err);

/* --- YAML and the saes: list (config_parse.c) */
/* Parses one YAML text into a document (nesting depth checked first); the caller deletes it. */
ms_status cfg_load_doc(yaml_document_t *doc, const char *name, const char *text, size_t len, ms_err *err);
void cfg_entry_free(ms_sae_entry *e);
/* derived: parsing for ms_config_derive_* (the entries were checked by the base parse). */
ms_status cfg_parse(ms_config *cfg, const char *name, const char *text, size_t len,
                    const char *const *overrides, int n_overrides, const char *const *required,
                    bool derived, ms_err *err);

/* --- lifecycle, resolution, derived configs (config_derive.c) */
ms_status cfg_start(ms_config *cfg, const char *name, ms_err *err); /* every default set */
ms_status cfg_finish(ms_config *cfg, ms_err *err);                  /* resolve, validate, hash */
ms_status cfg_check_entries(const ms_config *cfg, ms_err *err);

/* --- text (config_dump.c) */
/* Appends to a growing string; false on OOM. */
bool cfg_sb_add(char **buf, size_t *len, size_t *cap, const char *s);
/* A scalar as YAML flow text that reads back as the same value: strings single-quoted. */
bool cfg_sb_scalar(char **buf, size_t *len, size_t *cap, const char *v, bool quote);

#endif
