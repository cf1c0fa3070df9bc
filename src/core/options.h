/* options.h -- the core's URL option parser (options.c). */
#ifndef KVI_CORE_OPTIONS_H
#define KVI_CORE_OPTIONS_H

#include "core/internal.h"

struct kvi_conn;

/* Checks an engine's option declarations at registration: KVI_E_INVALID
 * naming the engine and the faulty entry, else KVI_OK. */
kvi_status kvi__options_check(const kvi *k, const struct kvi_engine *e);

/* Reads every option of u into c: the common ones into c's fields, the
 * engine's declared ones into a new c->options (defaults first), and
 * checks the names an ABI-1 engine lists.  On error the detail message
 * names the option; whatever was allocated is released by
 * kvi__options_free(). */
kvi_status kvi__options_apply(kvi *k, struct kvi_conn *c, const kvi_url *u);

/* Frees c->options and the strings in it.  Safe when there are none. */
void kvi__options_free(kvi *k, struct kvi_conn *c);

/* Option number index of engine e (its own, then the common ones);
 * KVI_NOT_FOUND past the end. */
kvi_status kvi__option_describe(const struct kvi_engine *e, size_t index, kvi_option_info *out);

#endif
