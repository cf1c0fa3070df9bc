/*
 * error.c -- the per-thread detail message and the log hook.
 *
 * The message lives in thread-local storage tagged with the context that set
 * it, so kvi_errmsg(k) is thread-safe and never shows another context's
 * error.  Every path that writes an engine's message masks the connection's
 * password in what the message's arguments put in (URL parts, a server's
 * reply), as a second line of defence behind engines never printing one;
 * the message's own words are never masked (vformat_masked).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/types.h"

#define ERRMSG_MAX KVI__ERRMSG_MAX

_Thread_local struct kvi__errstate kvi__tl_err KVI__TLS_FAST;
#define tl_err kvi__tl_err

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

/* Replaces every whole occurrence of secret in msg by "***" (a secret
 * shorter than 3 bytes by as many '*'); the text never grows. */
static void scrub_whole(char *msg, const char *secret)
{
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

void kvi__scrub(char *msg, const char *secret)
{
    if (secret == NULL || secret[0] == '\0')
        return;
    scrub_whole(msg, secret);
    scrub_cut_tail(msg, secret);
}

/* A growing heap string; oom set once an allocation failed. */
struct text {
    char *s;
    size_t len, cap;
    int oom;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 128;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->s, cap);
        if (p == NULL) {
            t->oom = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

/* The secrets of one engine id: the URL's password and an option that
 * holds one (sentinel_password); either may be NULL. */
struct secrets {
    const char *s[2];
};

static struct secrets secrets_of(const struct kvi_conn *c)
{
    struct secrets z = {{NULL, NULL}};
    if (c != NULL) {
        z.s[0] = c->secret;
        z.s[1] = c->secret2;
    }
    return z;
}

/* Appends one conversion's text, masked: it came from an argument. */
static void text_add_masked(struct text *t, char *piece, int len, const struct secrets *z, int cut)
{
    if (len < 0) {
        t->oom = 1;
        return;
    }
    for (size_t i = 0; i < sizeof z->s / sizeof z->s[0]; i++) {
        const char *secret = z->s[i];
        if (secret == NULL || secret[0] == '\0')
            continue;
        scrub_whole(piece, secret);
        if (cut) /* a precision may have cut a password in two */
            scrub_cut_tail(piece, secret);
    }
    text_add(t, piece, strlen(piece));
}

/*
 * vasprintf() that masks the password in what the arguments put in, and only
 * there: the format's own words are the engine's fixed text and stay as they
 * are, so a password such as "e" or "counter" neither garbles a message nor
 * can be read off the stars.  Arguments carry what came from outside (URL
 * parts, a server's reply).  Handles the C99 conversions with their flags,
 * widths, precisions (also '*') and length modifiers; %n writes nothing.
 * Returns a heap string, NULL when out of memory or on a conversion it does
 * not know (the compiler checks every format, so that is a bug).
 */
static char *vformat_masked(const struct secrets *z, const char *fmt, va_list ap)
{
    struct text t = {0};
    text_add(&t, "", 0);
    const char *p = fmt;
    while (*p != '\0' && !t.oom) {
        const char *pct = strchr(p, '%');
        if (pct == NULL) {
            text_add(&t, p, strlen(p));
            break;
        }
        text_add(&t, p, (size_t)(pct - p));
        p = pct + 1;
        if (*p == '%') {
            text_add(&t, "%", 1);
            p++;
            continue;
        }
        /* The conversion, rebuilt with '*' replaced by its argument. */
        char spec[64];
        size_t n = 0;
        int has_precision = 0;
        spec[n++] = '%';
        while (*p != '\0' && strchr("-+ #0'", *p) != NULL && n < 8)
            spec[n++] = *p++;
        if (*p == '*') {
            n += (size_t)snprintf(spec + n, sizeof spec - n, "%d", va_arg(ap, int));
            p++;
        } else {
            while (*p >= '0' && *p <= '9' && n < 20)
                spec[n++] = *p++;
        }
        if (*p == '.') {
            has_precision = 1;
            spec[n++] = *p++;
            if (*p == '*') {
                n += (size_t)snprintf(spec + n, sizeof spec - n, "%d", va_arg(ap, int));
                p++;
            } else {
                while (*p >= '0' && *p <= '9' && n < 40)
                    spec[n++] = *p++;
            }
        }
        char len1 = 0, len2 = 0;
        if (*p != '\0' && strchr("hlLjzt", *p) != NULL) {
            len1 = *p;
            spec[n++] = *p++;
            if ((len1 == 'h' || len1 == 'l') && *p == len1) {
                len2 = *p;
                spec[n++] = *p++;
            }
        }
        char conv = *p;
        if (conv == '\0')
            break;
        p++;
        spec[n++] = conv;
        spec[n] = '\0';
        char *piece = NULL;
        int r = -1;
        switch (conv) {
        case 'd':
        case 'i':
            if (len1 == 'l' && len2 == 'l')
                r = asprintf(&piece, spec, va_arg(ap, long long));
            else if (len1 == 'l')
                r = asprintf(&piece, spec, va_arg(ap, long));
            else if (len1 == 'j')
                r = asprintf(&piece, spec, va_arg(ap, intmax_t));
            else if (len1 == 'z')
                r = asprintf(&piece, spec, va_arg(ap, ssize_t));
            else if (len1 == 't')
                r = asprintf(&piece, spec, va_arg(ap, ptrdiff_t));
            else
                r = asprintf(&piece, spec, va_arg(ap, int));
            break;
        case 'u':
        case 'o':
        case 'x':
        case 'X':
            if (len1 == 'l' && len2 == 'l')
                r = asprintf(&piece, spec, va_arg(ap, unsigned long long));
            else if (len1 == 'l')
                r = asprintf(&piece, spec, va_arg(ap, unsigned long));
            else if (len1 == 'j')
                r = asprintf(&piece, spec, va_arg(ap, uintmax_t));
            else if (len1 == 'z')
                r = asprintf(&piece, spec, va_arg(ap, size_t));
            else if (len1 == 't')
                r = asprintf(&piece, spec, va_arg(ap, ptrdiff_t));
            else
                r = asprintf(&piece, spec, va_arg(ap, unsigned));
            break;
        case 'c':
            r = asprintf(&piece, spec, va_arg(ap, int));
            break;
        case 's':
            if (len1 != 0)
                break; /* wide strings: never used */
            r = asprintf(&piece, spec, va_arg(ap, const char *));
            break;
        case 'p':
            r = asprintf(&piece, spec, va_arg(ap, void *));
            break;
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
        case 'a':
        case 'A':
            if (len1 == 'L')
                r = asprintf(&piece, spec, va_arg(ap, long double));
            else
                r = asprintf(&piece, spec, va_arg(ap, double));
            break;
        case 'n':
            (void)va_arg(ap, void *);
            continue;
        default:
            break;
        }
        if (r < 0) {
            t.oom = 1;
            break;
        }
        text_add_masked(&t, piece, r, z, conv == 's' && has_precision);
        free(piece);
    }
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

/* Copies src into dst (size dstlen), cut to fit. */
static void copy_cut(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Sets the message, already masked. */
static void set_errmsg(const kvi *k, const char *msg)
{
    copy_cut(tl_err.msg, sizeof tl_err.msg, msg);
    tl_err.k = k;
    tl_err.set = 1;
}

kvi_status kvi__verror(const kvi *k, kvi_status st, const char *fmt, va_list ap)
{
    char buf[ERRMSG_MAX];
    vsnprintf(buf, sizeof buf, fmt, ap);
    set_errmsg(k, buf);
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
    if (c != NULL && msg != NULL) {
        kvi__scrub(msg, c->secret);
        kvi__scrub(msg, c->secret2);
    }
}

const char *kvi_errmsg(const kvi *k)
{
    if (k == NULL || tl_err.k != k)
        return "";
    return tl_err.msg;
}

/* The message "ID: [WHERE: ]BODY": body formatted with the password masked
 * in what its arguments put in; id and where are fixed words, never masked. */
static kvi_status engine_verror(kvi_conn *c, kvi_status st, const char *where, const char *fmt,
                                va_list ap)
{
    struct secrets z = secrets_of(c);
    char *body = vformat_masked(&z, fmt, ap);
    const char *text = body ? body : "(out of memory formatting the message)";
    int has_where = where != NULL && where[0] != '\0';
    if (c == NULL && !has_where) {
        set_errmsg(NULL, text);
    } else {
        char *full = NULL;
        int n;
        if (c == NULL)
            n = asprintf(&full, "%.255s: %s", where, text);
        else if (has_where)
            n = asprintf(&full, "%.255s: %.255s: %s", c->id ? c->id : c->engine->name, where, text);
        else
            n = asprintf(&full, "%.255s: %s", c->id ? c->id : c->engine->name, text);
        if (n < 0)
            full = NULL;
        set_errmsg(c != NULL ? c->k : NULL, full ? full : text);
        free(full);
    }
    free(body);
    return st;
}

kvi_status kvi_engine_error(kvi_conn *c, kvi_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    engine_verror(c, st, NULL, fmt, ap);
    va_end(ap);
    return st;
}

kvi_status kvi_engine_error_in(kvi_conn *c, kvi_status st, const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    engine_verror(c, st, where, fmt, ap);
    va_end(ap);
    return st;
}

static void vlog_msg(kvi *k, const struct kvi_conn *c, kvi_log_level level, const char *prefix,
                     const char *fmt, va_list ap)
{
    const struct kvi__hook *h = atomic_load_explicit(&k->log, memory_order_acquire);
    if (h == NULL || (int)level > h->level)
        return;
    struct secrets z = secrets_of(c);
    char *body = vformat_masked(&z, fmt, ap), *full = NULL;
    const char *text = body ? body : "(out of memory formatting a log message)";
    if (prefix != NULL && asprintf(&full, "%.255s: %s", prefix, text) >= 0)
        text = full;
    char buf[ERRMSG_MAX * 2];
    copy_cut(buf, sizeof buf, text);
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
    vlog_msg(c->k, c, level, c->id, fmt, ap);
    va_end(ap);
}
