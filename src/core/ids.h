/* ids.h -- engine ids and their handles (ids.c). */
#ifndef KVI_CORE_IDS_H
#define KVI_CORE_IDS_H

#include "core/types.h"

/* Finds a defined id; NULL when none.  Lock-free. */
struct kvi_conn *kvi__conn_find(kvi *k, const char *id);

/* Closes and frees every handle of k (engine close() first).  Only from
 * kvi_free(). */
void kvi__ids_free(kvi *k);

#endif
