/* The SAEs a job describes, as one list that eval, analyze and report iterate over. */
#include <stdlib.h>
#include <string.h>

#include "app.h"

static char *dup_str(const char *s) { return s ? strdup(s) : strdup(""); }

ms_status ms_job_saes(const ms_config *cfg, ms_job_sae **out, int *n, ms_err *err)
{
    *out = NULL;
    *n = 0;
    /* Today a job trains one SAE (the sae section). A job with several SAEs (a dictionary
     * sweep, a second model) adds entries here; every consumer already loops over the list. */
    ms_job_sae *s = calloc(1, sizeof *s);
    if (!s) return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    snprintf(s->name, sizeof s->name, "%s", "sae");
    s->dir = dup_str(cfg->sae.out_dir);
    s->model_dir = dup_str(cfg->model.dir);
    s->activations = dup_str(cfg->sae.activations);
    if (!s->dir || !s->model_dir || !s->activations) {
        ms_job_saes_free(s, 1);
        return ms_err_set(err, MS_ERR_NOMEM, "out of memory");
    }
    *out = s;
    *n = 1;
    return MS_OK;
}

void ms_job_saes_free(ms_job_sae *s, int n)
{
    if (!s) return;
    for (int i = 0; i < n; i++) {
        free(s[i].dir);
        free(s[i].model_dir);
        free(s[i].activations);
    }
    free(s);
}

char *ms_job_analysis_path(const ms_config *cfg, const char *name, const char *beside)
{
    const char *base = cfg->analyze.out_dir && *cfg->analyze.out_dir ? cfg->analyze.out_dir : NULL;
    char *dir = base ? ms_path_join(base, name) : strdup(beside);
    char *p = dir ? ms_path_join(dir, "analysis.h5") : NULL;
    free(dir);
    return p;
}
