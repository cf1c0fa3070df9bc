/*
 * resolve.c -- host addresses found once (see resolve.h).
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "resolve.h"

/* A name that failed to resolve is tried again after this long. */
#define RETRY_AFTER_MS 1000

/* Why a lookup failed, as numbers (so that it can be kept in one atomic
 * word): the resolver's EAI_* code, or 0 for "no IPv4 or IPv6 address";
 * the errno of EAI_SYSTEM. */
struct failure {
    int rc, sys_errno;
};

static void failure_text(const char *host, struct failure f, char *err, size_t errlen)
{
    snprintf(err, errlen, "cannot resolve %s: %s", host,
             f.rc == 0            ? "no IPv4 or IPv6 address"
             : f.rc == EAI_SYSTEM ? strerror(f.sys_errno)
                                  : gai_strerror(f.rc));
}

/* Copies the IPv4 and IPv6 addresses of ai into out (at most
 * KVI_REDIS_MAX_ADDRS); returns how many. */
static int addrs_from(const struct addrinfo *ai, struct kvi_redis_addrlist *out)
{
    memset(out, 0, sizeof *out);
    for (const struct addrinfo *a = ai; a != NULL && out->n < KVI_REDIS_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof out->sa[0] ||
            (a->ai_family != AF_INET && a->ai_family != AF_INET6))
            continue;
        memcpy(&out->sa[out->n], a->ai_addr, a->ai_addrlen);
        out->len[out->n] = a->ai_addrlen;
        out->n++;
    }
    return (int)out->n;
}

/* kvi__redis_addrlist_fill, with the reason of a failure as numbers in
 * *why. */
static int fill(const char *host, int numeric_only, struct kvi_redis_addrlist *out,
                struct failure *why)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (numeric_only ? AI_NUMERICHOST : 0);
    memset(out, 0, sizeof *out);
    int rc = getaddrinfo(host, "0", &hints, &ai);
    if (rc != 0) {
        *why = (struct failure){rc, rc == EAI_SYSTEM ? errno : 0};
        return -1;
    }
    int n = addrs_from(ai, out);
    freeaddrinfo(ai);
    if (n == 0) {
        *why = (struct failure){0, 0};
        return -1;
    }
    return 0;
}

/* See resolve.h. */
int kvi__redis_addrlist_fill(const char *host, int numeric_only, struct kvi_redis_addrlist *out,
                             char *err, size_t errlen)
{
    struct failure why;
    if (fill(host, numeric_only, out, &why) == 0)
        return 0;
    if (numeric_only && why.rc == EAI_NONAME)
        snprintf(err, errlen, "%s is not an IP address and was not resolved before", host);
    else
        failure_text(host, why, err, errlen);
    return -1;
}

/* See resolve.h. */
int kvi__redis_is_address(const char *host)
{
    struct kvi_redis_addrlist l;
    struct failure why;
    return fill(host, 1, &l, &why) == 0;
}

/* The life of one name: RESOLVED is final (addrs never change again);
 * FAILED -> BUSY by compare-and-swap, so that one thread at a time starts
 * the next round (BUSY while it does); PENDING while the round's lookup
 * thread runs, which alone then writes the entry and ends it RESOLVED or
 * FAILED.
 *
 * The lookup is a thread of kvi's own, not glibc's getaddrinfo_a: that
 * one's helper threads and request lock have no fork handling, so a child
 * forked while a lookup of the parent was under way could find its own
 * lookups never answered or its getaddrinfo_a blocked on the copied lock
 * (seen: 44 children of 100, forked with four lookups in flight).  A
 * thread made here is known to be the parent's by the entry's pid: the
 * child starts its own (kvi__redis_names_get).
 *
 * ORPHANED: the table was freed while the lookup ran (PENDING ->
 * ORPHANED by kvi__redis_names_free, which then leaves e alone); the
 * lookup thread, whose PENDING -> RESOLVED/FAILED then fails, frees e.
 * So freeing never waits for the resolver (up to its own timeouts). */
enum { RESOLVED = 0, PENDING, FAILED, BUSY, ORPHANED };

/* The reason and time of a failure are atomics: a thread that saw FAILED
 * reads them while another one, which won FAILED -> BUSY, may already
 * write the next round's (so they are numbers, not a text: the message is
 * made by each reader from the host and these). */
struct entry {
    struct entry *next;
    _Atomic int state;
    _Atomic pid_t pid;      /* PENDING: the process whose lookup it is */
    _Atomic int64_t failed_ms;  /* FAILED: when */
    _Atomic uint64_t failure;   /* FAILED: struct failure, packed (pack()) */
    struct kvi_redis_addrlist addrs; /* RESOLVED (PENDING: the lookup thread's) */
    char host[];            /* NUL-terminated */
};

struct kvi_redis_names {
    struct entry *_Atomic head;
};

static uint64_t pack(struct failure f)
{
    return (uint64_t)(uint32_t)f.rc << 32 | (uint32_t)f.sys_errno;
}

static struct failure unpack(uint64_t v)
{
    return (struct failure){(int)(int32_t)(uint32_t)(v >> 32), (int)(int32_t)(uint32_t)v};
}

/* Records a failed round of e (the caller holds BUSY, or e is not
 * published yet) and makes it FAILED. */
static void set_failed(struct entry *e, struct failure f, int64_t now)
{
    atomic_store(&e->failure, pack(f));
    atomic_store(&e->failed_ms, now);
    atomic_store(&e->state, FAILED);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
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
        /* This process's lookup thread still writes into e: it frees e
         * when it ends (a parent's, copied by fork, runs in no thread
         * here). */
        int st = PENDING;
        if (atomic_load(&e->pid) != getpid() ||
            !atomic_compare_exchange_strong(&e->state, &st, ORPHANED))
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

/* One round's lookup, in a thread of its own (detached): resolves e's
 * host with the system resolver and ends e RESOLVED or FAILED, touching e
 * no more after that compare-and-swap -- or, when the table was freed
 * meanwhile (ORPHANED), frees e. */
static void *lookup_main(void *arg)
{
    struct entry *e = arg;
    struct failure why;
    int end = RESOLVED;
    if (fill(e->host, 0, &e->addrs, &why) != 0) {
        atomic_store(&e->failure, pack(why));
        atomic_store(&e->failed_ms, now_ms());
        end = FAILED;
    }
    int st = PENDING;
    if (!atomic_compare_exchange_strong(&e->state, &st, end))
        free(e);
    return NULL;
}

/* Starts e's lookup in the background (e is BUSY, made PENDING or
 * FAILED).  The thread takes no signal of the application's. */
static void start_lookup(struct entry *e)
{
    atomic_store(&e->pid, getpid());
    atomic_store(&e->state, PENDING);
    pthread_attr_t attr;
    sigset_t all, old;
    sigfillset(&all);
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t th;
        rc = pthread_create(&th, &attr, lookup_main, e);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0)
        set_failed(e, (struct failure){EAI_SYSTEM, rc}, now_ms());
}

static void why_failed(struct entry *e, char *err, size_t errlen)
{
    failure_text(e->host, unpack(atomic_load(&e->failure)), err, errlen);
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
    if (st == PENDING && atomic_load(&e->pid) != getpid()) {
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
        snprintf(err, errlen, "%s is being resolved (a name learned at run time is looked up "
                              "in the background; try again)", host);
        return NULL;
    }
    if (st == FAILED) {
        why_failed(e, err, errlen);
        if (now_ms() - atomic_load(&e->failed_ms) >= RETRY_AFTER_MS &&
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
    struct failure why;
    if (fill(host, 1, &e->addrs, &why) != 0 && fill(host, 0, &e->addrs, &why) != 0) {
        /* Kept as failed: connects within the next second report this
         * reason; then a background lookup tries again. */
        set_failed(e, why, now_ms());
        push(t, e);
        failure_text(host, why, err, errlen);
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
    while (e != NULL && atomic_load(&e->state) == PENDING && atomic_load(&e->pid) == getpid()) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0)
            return;
        nap_ms(left < 1 ? left : 1);
    }
}
