/* apps/job/config_emit.h: private to msjob — emit the resolved config as a YAML mapping into an
 * emitter that another writer (the run record) is driving. */
#ifndef MONOSEM_JOB_CONFIG_EMIT_H
#define MONOSEM_JOB_CONFIG_EMIT_H

#include <yaml.h>

#include "monosem/job.h"

/* Emits MAPPING-START ... MAPPING-END for every field; returns false on emitter failure. */
bool ms_config_emit_mapping(const ms_config *cfg, yaml_emitter_t *em);

#endif
