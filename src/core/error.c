/*
 * error.c -- the per-thread detail message and the log hook.
 *
 * The message lives in thread-local storage tagged with the context that set
 * it, so kvi_errmsg(k) is thread-safe and never shows another context's
 * error.  Every path that writes a message scrubs the connection's password
 * from it, as a second line of defence behind engines never printing one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/types.h"

#define ERRMSG_MAX 512

static _Thread_local struct {
    const kvi *k;
    int set;
    char msg[ERRMSG_MAX];
} tl_err KVI__TLS_FAST;

void kvi__clear_error(void)
{
    tl_err.set = 0;
}

void kvi__discard_error(void)
{
    tl_err.set = 0;
    tl_err.k = NULL;
    tl_err.msg[0] = '\0';
}

int kvi__error_is_set(void)
{
    return tl_err.set;
}

/* Blanks a tail of msg that is a proper prefix of secret: what is left of a
 * password that a truncation cut in two. */
static void scrub_cut_tail(char *msg, const char *secret)
{
    size_t n = strlen(msg), slen = strlen(secret);
    for (size_t k = slen - 1 < n ? slen - 1 : n; k > 0; k--) {
        if (memcmp(msg + n - k, secret, k) == 0) {
            memset(msg + n - k, '*', k);
            return;
        }
    }
}

void kvi__scrub(char *msg, const char *secret)
{
    if (secret == NULL || secret[0] == '\0')
        return;
    size_t slen = strlen(secret);
    char *p = msg;
    while ((p = strstr(p, secret)) != NULL) {
        if (slen >= 3) {
            memmove(p + 3, p + slen, strlen(p + slen) + 1);
            memcpy(p, "***", 3);
            p += 3;
        } else {
            /* A shorter secret cannot hold "***"; blank it out instead. */
            memset(p, '*', slen);
            p += slen;
        }
    }
    scrub_cut_tail(msg, secret);
}

/* Copies src into dst (size dstlen), scrubbing secret first and again after
 * the cut, so that no whole or cut password survives. */
static void copy_scrubbed(char *dst, size_t dstlen, const char *src, const char *secret)
{
    size_t n = strlen(src);
    char *tmp = NULL;
    if (secret != NULL && secret[0] != '\0' && (tmp = malloc(n + 1)) != NULL) {
        memcpy(tmp, src, n + 1);
        kvi__scrub(tmp, secret);
        src = tmp;
        n = strlen(tmp);
    }
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    kvi__scrub(dst, secret);
    free(tmp);
}

void kvi__set_errmsg(const kvi *k, const char *secret, const char *msg)
{
    copy_scrubbed(tl_err.msg, sizeof tl_err.msg, msg, secret);
    tl_err.k = k;
    tl_err.set = 1;
}

/* vasprintf into a heap string (NULL when out of memory). */
static char *vformat(const char *fmt, va_list ap)
{
    char *out = NULL;
    if (vasprintf(&out, fmt, ap) < 0)
        return NULL;
    return out;
}

kvi_status kvi__verror(const kvi *k, kvi_status st, const char *fmt, va_list ap)
{
    char buf[ERRMSG_MAX];
    vsnprintf(buf, sizeof buf, fmt, ap);
    kvi__set_errmsg(k, NULL, buf);
    return st;
}

kvi_status kvi__error(const kvi *k, kvi_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvi__verror(k, st, fmt, ap);
    va_end(ap);
    return st;
}

void kvi_engine_scrub(const kvi_conn *c, char *msg)
{
    if (c != NULL && msg != NULL)
        kvi__scrub(msg, c->secret);
}

const char *kvi_errmsg(const kvi *k)
{
    if (k == NULL || tl_err.k != k)
        return "";
    return tl_err.msg;
}

kvi_status kvi_engine_error(kvi_conn *c, kvi_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = vformat(fmt, ap);
    va_end(ap);
    const char *text = body ? body : "(out of memory formatting the message)";
    if (c == NULL) {
        kvi__set_errmsg(NULL, NULL, text);
    } else {
        char *full = NULL;
        if (asprintf(&full, "%.255s: %s", c->id ? c->id : c->engine->name, text) < 0)
            full = NULL;
        kvi__set_errmsg(c->k, c->secret, full ? full : text);
        free(full);
    }
    free(body);
    return st;
}

static void vlog_msg(kvi *k, const char *secret, kvi_log_level level, const char *prefix,
                     const char *fmt, va_list ap)
{
    const struct kvi__hook *h = atomic_load_explicit(&k->log, memory_order_acquire);
    if (h == NULL || (int)level > h->level)
        return;
    char *body = vformat(fmt, ap), *full = NULL;
    const char *text = body ? body : "(out of memory formatting a log message)";
    if (prefix != NULL && asprintf(&full, "%.255s: %s", prefix, text) >= 0)
        text = full;
    char buf[ERRMSG_MAX * 2];
    copy_scrubbed(buf, sizeof buf, text, secret);
    free(full);
    free(body);
    ((kvi_log_fn)h->fn)(h->ud, level, buf);
}

void kvi__log(kvi *k, kvi_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_msg(k, NULL, level, NULL, fmt, ap);
    va_end(ap);
}

void kvi_engine_log(kvi_conn *c, kvi_log_level level, const char *fmt, ...)
{
    if (c == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog_msg(c->k, c->secret, level, c->id, fmt, ap);
    va_end(ap);
}
