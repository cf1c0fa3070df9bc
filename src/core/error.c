/*
 * error.c -- the per-thread detail message and the log hook.
 *
 * The message lives in thread-local storage tagged with the context that set
 * it, so kvi_errmsg(k) is thread-safe and never shows another context's
 * error.  Every path that writes a message scrubs the connection's password
 * from it, as a second line of defence behind engines never printing one.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/context.h"

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

int kvi__error_is_set(void)
{
    return tl_err.set;
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
}

void kvi__set_errmsg(const kvi *k, const char *secret, const char *msg)
{
    /* Scrub the whole text first: truncating first could leave a cut
     * password that no longer matches. */
    char buf[ERRMSG_MAX * 2];
    size_t n = strlen(msg);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, msg, n);
    buf[n] = '\0';
    kvi__scrub(buf, secret);
    n = strlen(buf);
    if (n >= sizeof tl_err.msg)
        n = sizeof tl_err.msg - 1;
    memcpy(tl_err.msg, buf, n);
    tl_err.msg[n] = '\0';
    tl_err.k = k;
    tl_err.set = 1;
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

const char *kvi_errmsg(const kvi *k)
{
    if (k == NULL || tl_err.k != k)
        return "";
    return tl_err.msg;
}

kvi_status kvi_engine_error(kvi_conn *c, kvi_status st, const char *fmt, ...)
{
    char body[ERRMSG_MAX], buf[ERRMSG_MAX + 300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (c == NULL) {
        kvi__set_errmsg(NULL, NULL, body);
        return st;
    }
    snprintf(buf, sizeof buf, "%.255s: %s", c->id ? c->id : c->engine->name, body);
    kvi__set_errmsg(c->k, c->secret, buf);
    return st;
}

static void vlog_msg(kvi *k, const char *secret, kvi_log_level level, const char *prefix,
                     const char *fmt, va_list ap)
{
    kvi_log_fn fn = atomic_load_explicit(&k->log_fn, memory_order_acquire);
    if (fn == NULL || (int)level > atomic_load_explicit(&k->log_level, memory_order_relaxed))
        return;
    char body[ERRMSG_MAX], buf[ERRMSG_MAX + 300];
    vsnprintf(body, sizeof body, fmt, ap);
    if (prefix != NULL)
        snprintf(buf, sizeof buf, "%.255s: %s", prefix, body);
    else
        snprintf(buf, sizeof buf, "%s", body);
    kvi__scrub(buf, secret);
    fn(atomic_load_explicit(&k->log_ud, memory_order_relaxed), level, buf);
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

uint64_t kvi__clock_us(int coarse)
{
    struct timespec ts;
    clock_gettime(coarse ? CLOCK_MONOTONIC_COARSE : CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
