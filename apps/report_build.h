/* apps/report_build.h: builds the static report directory of a job (rank 0 only). */
#ifndef MONOSEM_REPORT_BUILD_H
#define MONOSEM_REPORT_BUILD_H

#include "monosem/io.h"
#include "monosem/job.h"

/* Writes <run.out_dir>/report/ (index.html, assets, data/ .js files) from every SAE's eval.json and
 * analysis file and the neuron analysis; built under a temporary name and renamed when whole.
 * Not collective: rank 0 calls it, the stage agrees afterwards. Facts go into rec. */
ms_status app_report_build(const ms_config *cfg, ms_runrec *rec, ms_err *err);

#endif
