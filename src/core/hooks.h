/* hooks.h -- a context's log hook, clock and slow-call threshold (hooks.c). */
#ifndef KVI_CORE_HOOKS_H
#define KVI_CORE_HOOKS_H

#include "core/types.h"

/* Sets a new context's hooks to their defaults: no log, the wall clock, a
 * slow-call threshold of 100 ms. */
void kvi__hooks_init(kvi *k);

/* Frees every hook k ever had.  Only from kvi_free(). */
void kvi__hooks_free(kvi *k);

#endif
