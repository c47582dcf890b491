/* tests/fuzz/fuzz_config.c: libFuzzer harness for the job-file loader (apps/job/config_parse.c). Any bytes:
 * parse as a job file; an error is one line; a parsed job dumps, re-parses from its own dump to
 * the same hash (the dump is the canonical form), and compares equal to itself key by key. */
#include "fuzz_util.h"
#include "monosem/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_config cfg, back;
    ms_err err = {0};
    ms_status st = ms_config_parse(&cfg, "fuzz.yaml", (const char *)data, size, NULL, 0, NULL, &err);
    fz_check_err(st, &err);
    if (st != MS_OK) return 0;
    char *dump = ms_config_dump_string(&cfg);
    if (!dump) abort();
    ms_err e2 = {0};
    if (ms_config_parse(&back, "dump", dump, strlen(dump), NULL, 0, NULL, &e2) != MS_OK) {
        fprintf(stderr, "the dump of a valid job does not parse: %s\n%s\n", e2.msg, dump);
        abort();
    }
    if (strcmp(back.hash, cfg.hash) != 0) {
        fprintf(stderr, "dump round trip changed the hash\n%s\n", dump);
        abort();
    }
    static const char *const all[] = {"run.", "corpus.", "tokenizer.", "model.", "train_model.", "generate.",
                                      "sae.", "eval.", "analyze.", NULL};
    char *keys = ms_config_result_keys(&cfg, all);
    ms_err e3 = {0};
    if (!keys || ms_config_result_diff(&back, all, keys, "fuzz", "", &e3) != MS_OK) {
        fprintf(stderr, "result keys differ after a round trip: %s\n", e3.msg);
        abort();
    }
    free(keys);
    free(dump);
    ms_config_free(&back);
    ms_config_free(&cfg);
    return 0;
}
