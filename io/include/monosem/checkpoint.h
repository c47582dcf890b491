/* monosem/checkpoint.h: choosing the checkpoint to resume, the latest or else its .prev
 * (io/checkpoint.c).
 * Conventions: not collective (rank 0 decides and broadcasts the choice); paths are the
 * caller's; nothing to free. One caller per path at a time (it renames files). */
#ifndef MONOSEM_CHECKPOINT_H
#define MONOSEM_CHECKPOINT_H

#include "monosem/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which checkpoint to resume from (io/checkpoint.c). Not collective (rank 0 decides, then
 * broadcasts). path is tried first, then path.prev; a file that fails to open or verify, or
 * carries no checksum, is "corrupt": it is logged with the reason, renamed to path.corrupt (kept
 * for inspection, never rotated into path.prev), and the previous one is used. *use = 0 none
 * (start fresh), 1 path, 2 path.prev. Both corrupt (or only a corrupt one) is MS_ERR_STATE
 * naming both reasons. */
ms_status ms_ckpt_pick(const char *path, int *use, ms_err *err);

#ifdef __cplusplus
}
#endif
#endif
