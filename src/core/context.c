/*
 * context.c -- a context's life: creating one (allocator, lock, hooks, the
 * built-in local engine) and freeing it with everything it owns.  What it
 * holds lives in the files named in docs/layout.md: registry.c (engines),
 * ids.c (engine ids and handles), hooks.c (log, clock), alloc.c (memory).
 */
#include <string.h>

#include "core/hooks.h"
#include "core/ids.h"
#include "core/registry.h"

kvi_status kvi_new(kvi **out)
{
    return kvi_new_with_allocator(out, &kvi__libc_allocator);
}

kvi_status kvi_new_with_allocator(kvi **out, const kvi_allocator *alloc)
{
    if (out == NULL)
        return KVI_E_INVALID;
    *out = NULL;
    if (alloc == NULL || alloc->malloc_fn == NULL || alloc->realloc_fn == NULL ||
        alloc->free_fn == NULL)
        return KVI_E_INVALID;
    kvi *k = alloc->malloc_fn(alloc->ud, sizeof *k);
    if (k == NULL)
        return KVI_E_NOMEM;
    memset(k, 0, sizeof *k);
    k->alloc = *alloc;
    if (pthread_mutex_init(&k->config_lock, NULL) != 0) {
        alloc->free_fn(alloc->ud, k);
        return KVI_E_NOMEM;
    }
    atomic_init(&k->conns, NULL);
    kvi__hooks_init(k);
    kvi_status st = kvi_register_engine(k, &kvi__engine_local);
    if (st != KVI_OK) {
        kvi_free(k);
        return st;
    }
    *out = k;
    return KVI_OK;
}

void kvi_free(kvi *k)
{
    if (k == NULL)
        return;
    /* Handles first: their close() may still log or read the clock. */
    kvi__ids_free(k);
    kvi__registry_free(k);
    kvi__hooks_free(k);
    pthread_mutex_destroy(&k->config_lock);
    kvi_allocator a = k->alloc;
    a.free_fn(a.ud, k);
}
