/*
 * internal.h -- what the core's files share with each other and with the
 * built-in local engine.  Not installed.  Symbols here are kvi__ prefixed
 * and hidden from the shared library's ABI.
 */
#ifndef KVI_CORE_INTERNAL_H
#define KVI_CORE_INTERNAL_H

#include "kvi/engine.h"

/* The embedded engine, built into libkvi (src/engines/local/). */
extern const struct kvi_engine kvi__engine_local;

/* Sets the calling thread's detail message for context k (printf-style,
 * never with a password) and returns st. */
kvi_status kvi__error(const kvi *k, kvi_status st, const char *fmt, ...) KVI_PRINTF(3, 4);
kvi_status kvi__verror(const kvi *k, kvi_status st, const char *fmt, va_list ap);
/* Clears the calling thread's detail message. */
void kvi__clear_error(void);
/* Forgets the calling thread's message, text included: after a call that
 * succeeded, kvi_errmsg() must not show an earlier call's message nor one
 * of an internal retry (the engine's failover, a resent request). */
void kvi__discard_error(void);
/* True when the calling thread's message was set since kvi__clear_error(). */
int kvi__error_is_set(void);
/* Replaces every occurrence of secret in msg by "***" in place (msg is a
 * NUL-terminated buffer of at least strlen(msg)+1 bytes), and a tail of msg
 * that is a cut-off start of secret by '*'.  For text that came whole from
 * outside (kvi_engine_scrub); engine messages mask their arguments only. */
void kvi__scrub(char *msg, const char *secret);

/* Logs through k's hook when level is enabled. */
void kvi__log(kvi *k, kvi_log_level level, const char *fmt, ...) KVI_PRINTF(3, 4);

/* Monotonic microseconds, for timing operations; coarse != 0 reads the
 * cheaper coarse clock (resolution of a few ms).  (clock.c) */
uint64_t kvi__clock_us(int coarse);

/* Allocation through k's allocator (alloc.c); libc's is the default. */
extern const kvi_allocator kvi__libc_allocator;
void *kvi__malloc(const kvi *k, size_t size);
void *kvi__calloc(const kvi *k, size_t n, size_t size);
void *kvi__realloc(const kvi *k, void *ptr, size_t size);
void kvi__free(const kvi *k, void *ptr);
char *kvi__strdup(const kvi *k, const char *s);

/* A batch's fetch found data: copies it into the batch's memory as op's
 * value and ends op with KVI_OK; KVI_E_NOMEM (op left open, to be ended by
 * the caller) when short.  What kvi_batch_op_value_alloc + memcpy +
 * kvi_batch_op_done do, in one call, for the local engine's batch slot.
 * (batch.c) */
kvi_status kvi__batch_op_fetched(kvi_conn *c, kvi_batch_op *op, const void *data, size_t len);

/* The value of hex digit ch (either case), -1 when it is not one; used by
 * the URL and the query word decoders.  (words.c) */
int kvi__hexval(unsigned char ch);

/* Parses configuration text (see kvi_load_config): calls line_fn for each
 * URL line with the trimmed, NUL-terminated line and its 1-based number;
 * stops at the first non-OK status and returns it.  Used by
 * kvi_load_config and the config fuzz target. */
kvi_status kvi__config_parse(const char *text, size_t len,
                             kvi_status (*line_fn)(void *ud, const char *line, size_t lineno),
                             void *ud);

#endif /* KVI_CORE_INTERNAL_H */
