/*
 * resolve.c -- host addresses found once (see resolve.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getaddrinfo_a */
#endif
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "resolve.h"

/* A name that failed to resolve is tried again after this long. */
#define RETRY_AFTER_MS 1000

/* See resolve.h. */
int kvi__redis_addrlist_fill(const char *host, int numeric_only, struct kvi_redis_addrlist *out,
                             char *err, size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (numeric_only ? AI_NUMERICHOST : 0);
    memset(out, 0, sizeof *out);
    int rc = getaddrinfo(host, "0", &hints, &ai);
    if (rc != 0) {
        if (numeric_only && rc == EAI_NONAME)
            snprintf(err, errlen, "%s is not an IP address and was not resolved before", host);
        else
            snprintf(err, errlen, "cannot resolve %s: %s", host,
                     rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    for (const struct addrinfo *a = ai; a != NULL && out->n < KVI_REDIS_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof out->sa[0] ||
            (a->ai_family != AF_INET && a->ai_family != AF_INET6))
            continue;
        memcpy(&out->sa[out->n], a->ai_addr, a->ai_addrlen);
        out->len[out->n] = a->ai_addrlen;
        out->n++;
    }
    freeaddrinfo(ai);
    if (out->n == 0) {
        snprintf(err, errlen, "cannot resolve %s: no IPv4 or IPv6 address", host);
        return -1;
    }
    return 0;
}

/* See resolve.h. */
int kvi__redis_is_address(const char *host)
{
    struct kvi_redis_addrlist l;
    char err[8];
    return kvi__redis_addrlist_fill(host, 1, &l, err, sizeof err) == 0;
}

/* The life of one name: RESOLVED is final (addrs never change again);
 * the others move by compare-and-swap, so that one thread at a time starts
 * or collects a lookup (BUSY while it does). */
enum { RESOLVED = 0, PENDING, FAILED, BUSY };

struct entry {
    struct entry *next;
    _Atomic int state;
    pid_t pid;              /* PENDING: the process whose lookup it is */
    int64_t failed_ms;      /* FAILED: when */
    char why[160];          /* FAILED: the resolver's reason */
    struct gaicb cb;        /* PENDING: the lookup under way */
    struct addrinfo hints;
    struct kvi_redis_addrlist addrs; /* RESOLVED */
    char host[];            /* NUL-terminated */
};

struct kvi_redis_names {
    struct entry *_Atomic head;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* See resolve.h. */
struct kvi_redis_names *kvi__redis_names_new(void)
{
    struct kvi_redis_names *t = malloc(sizeof *t);
    if (t != NULL)
        atomic_init(&t->head, NULL);
    return t;
}

/* See resolve.h. */
void kvi__redis_names_free(struct kvi_redis_names *t)
{
    if (t == NULL)
        return;
    struct entry *e = atomic_load(&t->head);
    while (e != NULL) {
        struct entry *next = e->next;
        if (atomic_load(&e->state) == PENDING && e->pid == getpid()) {
            /* The resolver's thread still writes into e->cb: wait for it. */
            if (gai_cancel(&e->cb) == EAI_NOTCANCELED) {
                const struct gaicb *list[1] = {&e->cb};
                while (gai_error(&e->cb) == EAI_INPROGRESS)
                    gai_suspend(list, 1, NULL);
            }
            if (gai_error(&e->cb) == 0 && e->cb.ar_result != NULL)
                freeaddrinfo(e->cb.ar_result);
        }
        free(e);
        e = next;
    }
    free(t);
}

static struct entry *find(const struct kvi_redis_names *t, const char *host)
{
    for (struct entry *e = atomic_load(&((struct kvi_redis_names *)t)->head); e != NULL;
         e = e->next)
        if (strcmp(e->host, host) == 0)
            return e;
    return NULL;
}

/* See resolve.h. */
const struct kvi_redis_addrlist *kvi__redis_names_find(const struct kvi_redis_names *t,
                                                       const char *host)
{
    if (t == NULL || host == NULL)
        return NULL;
    struct entry *e = find(t, host);
    return e != NULL && atomic_load(&e->state) == RESOLVED ? &e->addrs : NULL;
}

static void push(struct kvi_redis_names *t, struct entry *e)
{
    /* Two threads adding the same new name both push it; the first one
     * found serves. */
    e->next = atomic_load(&t->head);
    while (!atomic_compare_exchange_weak(&t->head, &e->next, e))
        ;
}

static struct entry *entry_new(const char *host)
{
    size_t len = strlen(host);
    struct entry *e = calloc(1, sizeof *e + len + 1);
    if (e != NULL)
        memcpy(e->host, host, len + 1);
    return e;
}

/* Starts e's lookup in the background (e is BUSY, made PENDING or
 * FAILED). */
static void start_lookup(struct entry *e)
{
    memset(&e->cb, 0, sizeof e->cb);
    memset(&e->hints, 0, sizeof e->hints);
    e->hints.ai_family = AF_UNSPEC;
    e->hints.ai_socktype = SOCK_STREAM;
    e->cb.ar_name = e->host;
    e->cb.ar_request = &e->hints;
    e->pid = getpid();
    struct gaicb *list[1] = {&e->cb};
    int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (rc != 0) {
        snprintf(e->why, sizeof e->why, "cannot resolve %s: %s", e->host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        e->failed_ms = now_ms();
        atomic_store(&e->state, FAILED);
        return;
    }
    atomic_store(&e->state, PENDING);
}

static void why_failed(const struct entry *e, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", e->why);
}

/* See resolve.h. */
const struct kvi_redis_addrlist *kvi__redis_names_get(struct kvi_redis_names *t, const char *host,
                                                      char *err, size_t errlen)
{
    if (t == NULL || host == NULL)
        return NULL;
    struct entry *e = find(t, host);
    if (e == NULL) {
        if ((e = entry_new(host)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        /* An address never reaches the resolver. */
        if (kvi__redis_addrlist_fill(host, 1, &e->addrs, err, errlen) == 0) {
            atomic_init(&e->state, RESOLVED);
            push(t, e);
            return &e->addrs;
        }
        atomic_init(&e->state, BUSY);
        start_lookup(e);
        push(t, e);
    }
    int st = atomic_load(&e->state);
    if (st == RESOLVED)
        return &e->addrs;
    if (st == PENDING && e->pid != getpid()) {
        /* A parent's lookup, whose thread is not in this process: the
         * child starts its own in a new entry (found first from now on);
         * the parent's stays untouched. */
        struct entry *mine = entry_new(host);
        if (mine == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        atomic_init(&mine->state, BUSY);
        start_lookup(mine);
        push(t, mine);
        e = mine;
        st = atomic_load(&e->state);
    }
    if (st == PENDING) {
        int rc = gai_error(&e->cb);
        if (rc != EAI_INPROGRESS && atomic_compare_exchange_strong(&e->state, &st, BUSY)) {
            struct addrinfo *ai = e->cb.ar_result;
            if (rc == 0) {
                /* Copied as the numeric path does, from the result. */
                struct kvi_redis_addrlist *a = &e->addrs;
                a->n = 0;
                for (const struct addrinfo *p = ai; p != NULL && a->n < KVI_REDIS_MAX_ADDRS;
                     p = p->ai_next)
                    if (p->ai_addrlen <= sizeof a->sa[0] &&
                        (p->ai_family == AF_INET || p->ai_family == AF_INET6)) {
                        memcpy(&a->sa[a->n], p->ai_addr, p->ai_addrlen);
                        a->len[a->n++] = p->ai_addrlen;
                    }
            }
            if (ai != NULL)
                freeaddrinfo(ai);
            e->cb.ar_result = NULL;
            if (rc == 0 && e->addrs.n > 0) {
                atomic_store(&e->state, RESOLVED);
                return &e->addrs;
            }
            snprintf(e->why, sizeof e->why, "cannot resolve %s: %s", e->host,
                     rc == 0 ? "no IPv4 or IPv6 address"
                     : rc == EAI_SYSTEM ? strerror(errno)
                                        : gai_strerror(rc));
            e->failed_ms = now_ms();
            atomic_store(&e->state, FAILED);
            why_failed(e, err, errlen);
            return NULL;
        }
        snprintf(err, errlen, "%s is being resolved (a name learned at run time is looked up "
                              "in the background; try again)", host);
        return NULL;
    }
    if (st == FAILED) {
        why_failed(e, err, errlen);
        if (now_ms() - e->failed_ms >= RETRY_AFTER_MS &&
            atomic_compare_exchange_strong(&e->state, &st, BUSY))
            start_lookup(e);
        return NULL;
    }
    snprintf(err, errlen, "%s is being resolved", host);
    return NULL;
}

/* See resolve.h. */
const struct kvi_redis_addrlist *kvi__redis_names_resolve_now(struct kvi_redis_names *t,
                                                              const char *host, char *err,
                                                              size_t errlen)
{
    if (t == NULL || host == NULL)
        return NULL;
    const struct kvi_redis_addrlist *known = kvi__redis_names_find(t, host);
    if (known != NULL)
        return known;
    struct entry *e = entry_new(host);
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (kvi__redis_addrlist_fill(host, 1, &e->addrs, err, errlen) != 0 &&
        kvi__redis_addrlist_fill(host, 0, &e->addrs, err, errlen) != 0) {
        /* Kept as failed: connects within the next second report this
         * reason; then a background lookup tries again. */
        snprintf(e->why, sizeof e->why, "%s", err);
        e->failed_ms = now_ms();
        atomic_init(&e->state, FAILED);
        push(t, e);
        return NULL;
    }
    atomic_init(&e->state, RESOLVED);
    push(t, e);
    return &e->addrs;
}

/* See resolve.h. */
void kvi__redis_names_wait(struct kvi_redis_names *t, const char *host, int64_t deadline_ms)
{
    char err[8];
    if (t == NULL || host == NULL || kvi__redis_names_get(t, host, err, sizeof err) != NULL)
        return;
    if (deadline_ms == 0)
        deadline_ms = now_ms() + 5000;
    struct entry *e = find(t, host);
    while (e != NULL && atomic_load(&e->state) == PENDING && e->pid == getpid()) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0)
            return;
        const struct gaicb *list[1] = {&e->cb};
        struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = (long)(left % 1000) * 1000000};
        if (gai_suspend(list, 1, &ts) == EAI_AGAIN)
            return;
        if (gai_error(&e->cb) != EAI_INPROGRESS)
            return;
    }
}
