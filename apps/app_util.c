/* Command-line helpers for stages: options with values, flags, positionals. */
#include <string.h>

#include "app.h"

static bool takes_value(const app_ctx *app, const char *opt)
{
    if (!app->def || !app->def->options) return false;
    for (int i = 0; app->def->options[i]; i++)
        if (strcmp(app->def->options[i], opt) == 0) return true;
    return false;
}

const char *app_option(const app_ctx *app, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < app->argc; i++) {
        const char *a = app->argv[i];
        if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0) continue;
        if (a[2 + n] == '=') return a + 3 + n;
        if (a[2 + n] == '\0' && i + 1 < app->argc) return app->argv[i + 1];
    }
    return NULL;
}

bool app_flag(const app_ctx *app, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < app->argc; i++)
        if (strncmp(app->argv[i], "--", 2) == 0 && strcmp(app->argv[i] + 2, name) == 0) return true;
    (void)n;
    return false;
}

const char *app_positional(const app_ctx *app, int idx)
{
    int k = 0;
    for (int i = 0; i < app->argc; i++) {
        const char *a = app->argv[i];
        if (strncmp(a, "--", 2) == 0 && a[2] != '\0') {
            if (!strchr(a, '=') && takes_value(app, a + 2)) i++; /* skip the option's value */
            continue;
        }
        if (k++ == idx) return a;
    }
    return NULL;
}
