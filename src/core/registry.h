/* registry.h -- the engines a context knows (registry.c). */
#ifndef KVI_CORE_REGISTRY_H
#define KVI_CORE_REGISTRY_H

#include "core/types.h"

/* The engine for scheme, loading its module on first use (module.c) and
 * registering it.  Called with k->config_lock held.  KVI_OK and *out, or
 * the load error with its message. */
kvi_status kvi__engine_get_locked(kvi *k, const char *scheme, const struct kvi_engine **out);

/* Forgets every engine (unloading modules) and the module path.  Only from
 * kvi_free(), after every handle is gone. */
void kvi__registry_free(kvi *k);

#endif
