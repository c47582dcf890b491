/* apps/run_state.h: the records `monosem run` keeps per unit of work (run_state.c) and the
 * summary it writes at the end (run_summary.c). */
#ifndef MONOSEM_RUN_STATE_H
#define MONOSEM_RUN_STATE_H

#include "app.h"

#define MS_UNIT_MAX_INPUTS 64 /* a unit reading every SAE of a sweep lists each */

/* One unit: a stage for one model or one SAE ("train-model-b", "train-A0", "compare"). */
typedef struct app_unit {
    char name[80];
    char stage[32];
    char *keys; /* "key=value\n" lines its outputs depend on (ms_config_subset), owned */
    int n_inputs;
    struct {
        char unit[80];
        char hash[17];
    } inputs[MS_UNIT_MAX_INPUTS]; /* units whose outputs it reads, with their hashes */
    char hash[17];                /* FNV-1a of keys and inputs (app_unit_hash) */
} app_unit;

/* One file a finished unit made, as it was when the unit finished. */
typedef struct app_unit_output {
    char *path;
    int64_t size;
    int64_t mtime_ns;
    char sha256[65]; /* "" for files over MS_UNIT_HASH_MAX (size and mtime alone) */
} app_unit_output;
/* Files up to this size are hashed when the unit finishes; a skip re-hashes those up to
 * MS_UNIT_REHASH_MAX always and larger ones only when their mtime moved (a full read of a
 * multi-GB activations file per rerun would cost more than most units). */
#define MS_UNIT_HASH_MAX ((int64_t)64 << 30)
#define MS_UNIT_REHASH_MAX ((int64_t)256 << 20)

/* A unit's record as read back from <out_dir>/stages/<unit>.json. */
typedef struct app_unit_record {
    bool complete;
    bool has_outputs; /* older records list no outputs: then presence alone is checked */
    int n_outputs;
    app_unit_output *outputs;
    char hash[17];
    char *keys;
    int n_inputs;
    struct {
        char unit[80];
        char hash[17];
    } inputs[MS_UNIT_MAX_INPUTS];
} app_unit_record;

void app_unit_input(app_unit *u, const char *unit, const char *hash);
void app_unit_hash(app_unit *u);
/* False if there is no readable record. Free with app_unit_record_free. */
bool app_unit_read(const char *out_dir, const char *unit, app_unit_record *r);
void app_unit_record_free(app_unit_record *r);
/* Writes the record (state "started" or "complete"), atomically. Rank 0. A complete record
 * lists the unit's output files (paths) with their size, mtime and sha256, read now. */
ms_status app_unit_write(const char *out_dir, const app_unit *u, bool complete, double seconds,
                        char *const *outputs, int n_outputs, ms_err *err);
/* True if every output the record lists is still the file the unit made (size, then sha256
 * as MS_UNIT_REHASH_MAX says); else false with why ("sae.h5: 1000 bytes, it made 1.7 MB").
 * Rank 0. */
bool app_unit_outputs_whole(const app_unit_record *r, char *why, size_t n);
/* Why a record no longer matches: the keys that changed (old -> new) and inputs made anew. */
void app_unit_why(const app_unit *u, const app_unit_record *r, char *why, size_t n);

/* What happened to each unit in this run, for summary.json. */
typedef struct app_unit_outcome {
    char unit[80];
    char status[16]; /* ran, resumed, redone, skipped, not-built */
    double seconds;
    char note[400];
} app_unit_outcome;

/* Writes <out_dir>/summary.json (rank 0): per SAE its numbers (eval.json when present, else
 * null with the reason; training-time metrics labelled as such), per model loss_clean /
 * loss_zero, features-vs-neurons medians, splitting and universality, the stage outcomes and
 * the paper's figures. */
ms_status app_run_summary_write(const ms_config *cfg, const app_unit_outcome *outcomes, int n_outcomes, double seconds,
                               ms_err *err);

#endif
