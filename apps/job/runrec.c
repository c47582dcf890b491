/* The run record <out_dir>/run-<stage>.yaml (+ run.yaml): resolved config, hash, ranks, library
 * versions, timers reduced over ranks, recorded facts and the exit status. */
#include "monosem/job.h"

#include <cJSON.h>
#include <hdf5.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "config_emit.h"

char *openblas_get_config(void);
int openblas_get_num_threads(void);

void ms_runrec_init(ms_runrec *r, const char *stage)
{
    memset(r, 0, sizeof *r);
    snprintf(r->stage, sizeof r->stage, "%s", stage);
    r->t_start = ms_time_now();
    r->cpu_start = ms_cpu_time();
}

void ms_runrec_time(ms_runrec *r, const char *name, double seconds)
{
    for (int i = 0; i < r->n_timers; i++)
        if (strcmp(r->timers[i].name, name) == 0) {
            r->timers[i].seconds += seconds;
            return;
        }
    if (r->n_timers == MS_RUNREC_MAX_TIMERS) return;
    snprintf(r->timers[r->n_timers].name, sizeof r->timers[0].name, "%s", name);
    r->timers[r->n_timers++].seconds = seconds;
}

void ms_runrec_fact(ms_runrec *r, const char *key, const char *fmt, ...)
{
    int i = 0;
    while (i < r->n_facts && strcmp(r->facts[i].key, key) != 0) i++;
    if (i == MS_RUNREC_MAX_FACTS) return;
    if (i == r->n_facts) {
        snprintf(r->facts[i].key, sizeof r->facts[i].key, "%s", key);
        r->n_facts++;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->facts[i].value, sizeof r->facts[i].value, fmt, ap);
    va_end(ap);
}

typedef struct em {
    yaml_emitter_t y;
    bool ok;
} em;

static void sc(em *e, const char *s)
{
    yaml_event_t ev;
    if (!e->ok) return;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1, YAML_ANY_SCALAR_STYLE);
    e->ok = yaml_emitter_emit(&e->y, &ev) != 0;
}

static void kv(em *e, const char *k, const char *fmt, ...) MS_PRINTF(3, 4);
static void kv(em *e, const char *k, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sc(e, k);
    sc(e, buf);
}

static void map_start(em *e)
{
    yaml_event_t ev;
    if (!e->ok) return;
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    e->ok = yaml_emitter_emit(&e->y, &ev) != 0;
}

static void map_end(em *e)
{
    yaml_event_t ev;
    if (!e->ok) return;
    yaml_mapping_end_event_initialize(&ev);
    e->ok = yaml_emitter_emit(&e->y, &ev) != 0;
}

static int out_handler(void *data, unsigned char *buf, size_t size)
{
    return fwrite(buf, 1, size, (FILE *)data) == size;
}

ms_status ms_runrec_write(ms_runrec *r, const ms_comm *comm, const ms_config *cfg, const char *dir,
                          ms_status exit_status, ms_err *err)
{
    double wall = ms_time_now() - r->t_start, cpu = ms_cpu_time() - r->cpu_start;
    /* every rank takes part in the reductions, in the same order: timer names from rank 0 */
    int n = r->n_timers;
    ms_comm_bcast(comm, &n, sizeof n, 0, NULL);
    double stats[MS_RUNREC_MAX_TIMERS + 2][3];
    ms_comm_minavgmax(comm, wall, &stats[0][0], &stats[0][1], &stats[0][2]);
    ms_comm_minavgmax(comm, cpu, &stats[1][0], &stats[1][1], &stats[1][2]);
    char names[MS_RUNREC_MAX_TIMERS][48];
    for (int i = 0; i < n; i++) {
        if (comm->rank == 0) memcpy(names[i], r->timers[i].name, sizeof names[i]);
        ms_comm_bcast(comm, names[i], sizeof names[i], 0, NULL);
        double mine = 0;
        for (int j = 0; j < r->n_timers; j++)
            if (strcmp(r->timers[j].name, names[i]) == 0) mine = r->timers[j].seconds;
        ms_comm_minavgmax(comm, mine, &stats[i + 2][0], &stats[i + 2][1], &stats[i + 2][2]);
    }
    if (comm->rank != 0) return MS_OK;

    ms_status st = ms_mkdirs(dir, err);
    if (st) return st;
    char path[4096], *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    em e = {.ok = true};
    yaml_emitter_initialize(&e.y);
    yaml_emitter_set_output(&e.y, out_handler, f);
    yaml_emitter_set_width(&e.y, 1000);
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    yaml_emitter_emit(&e.y, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    yaml_emitter_emit(&e.y, &ev);
    map_start(&e);
    kv(&e, "stage", "%s", r->stage);
    kv(&e, "status", "%s", ms_status_str(exit_status));
    kv(&e, "exit_code", "%d", ms_status_exit_code(exit_status));
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    kv(&e, "finished", "%s", when);
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    kv(&e, "host", "%s", host);
    kv(&e, "ranks", "%d", comm->size);
    kv(&e, "ranks_per_node", "%d", comm->node_size);
    int cpus, sharers, online;
    ms_cpu_binding(&cpus, &sharers, &online);
    /* rank 0's binding: what the launcher granted, and the threads that follow from it */
    kv(&e, "cpu_binding", "affinity mask %d of %d online CPUs, shared by %d rank(s); %d thread(s) per rank",
       cpus, online, sharers, openblas_get_num_threads());
    kv(&e, "config_hash", "%s", cfg ? cfg->hash : "");
    sc(&e, "versions");
    map_start(&e);
    kv(&e, "monosem", "%s", MS_VERSION_STRING);
    char mpiv[256];
    ms_comm_library_version(mpiv, sizeof mpiv);
    kv(&e, "mpi", "%s", mpiv);
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    kv(&e, "hdf5", "%u.%u.%u", maj, min, rel);
    kv(&e, "openblas", "%s", openblas_get_config());
    kv(&e, "libyaml", "%s", yaml_get_version_string());
    kv(&e, "cjson", "%s", cJSON_Version());
    kv(&e, "openssl", "%s", OpenSSL_version(OPENSSL_VERSION));
    map_end(&e);
    sc(&e, "timers_s");
    map_start(&e);
    const char *fixed[2] = {"wall", "cpu"};
    for (int i = 0; i < n + 2; i++) {
        sc(&e, i < 2 ? fixed[i] : names[i - 2]);
        map_start(&e);
        kv(&e, "min", "%.6g", stats[i][0]);
        kv(&e, "avg", "%.6g", stats[i][1]);
        kv(&e, "max", "%.6g", stats[i][2]);
        map_end(&e);
    }
    map_end(&e);
    sc(&e, "facts");
    map_start(&e);
    for (int i = 0; i < r->n_facts; i++) kv(&e, r->facts[i].key, "%s", r->facts[i].value);
    map_end(&e);
    if (cfg) {
        sc(&e, "config");
        e.ok = e.ok && ms_config_emit_mapping(cfg, &e.y);
    }
    map_end(&e);
    yaml_document_end_event_initialize(&ev, 1);
    yaml_emitter_emit(&e.y, &ev);
    yaml_stream_end_event_initialize(&ev);
    yaml_emitter_emit(&e.y, &ev);
    yaml_emitter_flush(&e.y);
    yaml_emitter_delete(&e.y);
    fclose(f);
    if (!e.ok) {
        free(buf);
        return ms_err_set(err, MS_ERR_IO, "%s: cannot emit the run record", dir);
    }
    snprintf(path, sizeof path, "%s/run-%s.yaml", dir, r->stage);
    st = ms_file_write_atomic(path, buf, len, err);
    if (!st) {
        snprintf(path, sizeof path, "%s/run.yaml", dir);
        st = ms_file_write_atomic(path, buf, len, err);
    }
    free(buf);
    return st;
}
