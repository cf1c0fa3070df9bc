/*
 * resolve.c -- host addresses found once (see resolve.h).
 */
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

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

struct entry {
    struct entry *next;
    struct kvi_redis_addrlist addrs;
    char host[]; /* NUL-terminated */
};

struct kvi_redis_names {
    struct entry *_Atomic head;
};

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
        free(e);
        e = next;
    }
    free(t);
}

/* See resolve.h. */
const struct kvi_redis_addrlist *kvi__redis_names_find(const struct kvi_redis_names *t,
                                                       const char *host)
{
    if (t == NULL || host == NULL)
        return NULL;
    for (const struct entry *e = atomic_load(&((struct kvi_redis_names *)t)->head); e != NULL;
         e = e->next)
        if (strcmp(e->host, host) == 0)
            return &e->addrs;
    return NULL;
}

/* See resolve.h. */
const struct kvi_redis_addrlist *kvi__redis_names_get(struct kvi_redis_names *t, const char *host,
                                                      char *err, size_t errlen)
{
    const struct kvi_redis_addrlist *known = kvi__redis_names_find(t, host);
    if (known != NULL || t == NULL || host == NULL)
        return known;
    size_t len = strlen(host);
    struct entry *e = malloc(sizeof *e + len + 1);
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(e->host, host, len + 1);
    /* An address never reaches the resolver; a name does, once. */
    if (kvi__redis_addrlist_fill(host, 1, &e->addrs, err, errlen) != 0 &&
        kvi__redis_addrlist_fill(host, 0, &e->addrs, err, errlen) != 0) {
        free(e);
        return NULL;
    }
    /* Pushed without a lock; two threads resolving the same new name both
     * push it, and the first one found serves. */
    e->next = atomic_load(&t->head);
    while (!atomic_compare_exchange_weak(&t->head, &e->next, e))
        ;
    return &e->addrs;
}
