/*
 * internal.h -- what the core's files share with each other and with the
 * built-in local engine.  Not installed.  Symbols here are kvi__ prefixed
 * and hidden from the shared library's ABI.
 */
#ifndef KVI_CORE_INTERNAL_H
#define KVI_CORE_INTERNAL_H

#include <string.h>

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

/* For the local engine's batch slot, about the group it was given (ops
 * op0..): whether the batch knows them all to be fetches (every op since
 * the last run on one id, all fetches: then the slot need not look); and,
 * from the slot, that it ended all n of them itself, misses of them
 * KVI_NOT_FOUND and the rest KVI_OK (the core then counts them so without
 * looking at each).  (batch.c) */
int kvi__batch_group_all_fetches(kvi_batch_op *op0);
void kvi__batch_group_counted(kvi_batch_op *op0, size_t n, size_t misses);

/* Where the local engine's batch fetches put their values, under a shard
 * lock, without a call per value: the free room [p, end) of the batch's
 * newest chunk of memory.  Opened from any op of the batch, then values
 * are put, then closed (which keeps what was put); nothing else may take
 * the batch's memory in between.  (batch.c) */
typedef struct kvi__batch_sink {
    kvi_batch *b;
    char *p, *end;
} kvi__batch_sink;

void kvi__batch_sink_open(kvi_batch_op *op, kvi__batch_sink *s);
void kvi__batch_sink_close(kvi__batch_sink *s);
/* A new chunk with room for need bytes (returns its start, the sink then
 * points there); NULL when out of memory. */
char *kvi__batch_sink_more(kvi__batch_sink *s, size_t need);

/* memcpy of a short key or value (most are a few to 16 bytes) without a
 * call. */
static inline void kvi__copy_small(char *dst, const void *src, size_t len)
{
    const char *s = src;
    if (len >= 8 && len <= 16) {
        uint64_t a, z;
        memcpy(&a, s, 8);
        memcpy(&z, s + len - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + len - 8, &z, 8);
    } else if (len >= 4 && len < 8) {
        uint32_t a, z;
        memcpy(&a, s, 4);
        memcpy(&z, s + len - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + len - 4, &z, 4);
    } else if (len > 0 && len < 4) {
        dst[0] = s[0];
        dst[len / 2] = s[len / 2];
        dst[len - 1] = s[len - 1];
    } else if (len > 0) {
        memcpy(dst, s, len);
    }
}

/* A copy of len bytes plus a NUL in the batch's memory; NULL when out of
 * memory. */
static inline char *kvi__batch_sink_put(kvi__batch_sink *s, const void *data, size_t len)
{
    char *p = s->p;
    if ((size_t)(s->end - p) <= len) {
        p = kvi__batch_sink_more(s, len + 1);
        if (p == NULL)
            return NULL;
    }
    kvi__copy_small(p, data, len);
    p[len] = '\0';
    s->p = p + len + 1;
    return p;
}

/* Ends a batch's open fetch op (fresh: no value, reply nor message yet)
 * with its common outcomes, as kvi_batch_op_done does for them: found
 * (the value in the batch's memory) or KVI_NOT_FOUND.  The caller clears
 * the thread's detail message once afterwards (kvi__clear_error). */
static inline void kvi__batch_op_found(kvi_batch_op *op, char *data, size_t len)
{
    op->value.data = data;
    op->value.len = len;
    op->status = KVI_OK;
    op->done = 1;
}

static inline void kvi__batch_op_missing(kvi_batch_op *op)
{
    op->integer = 0;
    op->status = KVI_NOT_FOUND;
    op->done = 1;
}

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
