/*
 * resolve.h -- the addresses of the redis engine's servers, found once:
 * an IP address is parsed (AI_NUMERICHOST: no resolver call at all); a host
 * name of the URL is resolved with the system resolver when the URL is
 * defined (redis.c's open, kvi__redis_names_resolve_now); a name learned
 * later (a master named by the sentinels, a cluster node announced by name)
 * is looked up in the background (a thread of its own) the first time a
 * connection to it is wanted: a blocking connect waits for it within its
 * deadline (kvi__redis_names_wait), a non-blocking one fails at once
 * ("being resolved") until the addresses are in, so no step waits for the
 * resolver beyond its connect deadline.  The addresses are kept for every connect and reconnect until
 * the engine id is closed: a resolved name is not looked up again (a DNS
 * change needs the id defined anew, e.g. a restart); a name that failed is
 * tried again, in the background, at most once a second.
 *
 * Connection layer: knows nothing of the engine.  Thread-safe without
 * locks (an append-only list; each name's state moves by compare-and-swap),
 * so also usable in a child after fork(), which starts its own lookups (no
 * getaddrinfo_a: its helper threads and lock are not fork-safe).
 */
#ifndef KVI_REDIS_RESOLVE_H
#define KVI_REDIS_RESOLVE_H

#include <stddef.h>
#include <sys/socket.h>

/* Addresses kept per host (the resolver's first ones, in its order). */
#define KVI_REDIS_MAX_ADDRS 8

/* The addresses of one host, port 0: the connect sets the port. */
struct kvi_redis_addrlist {
    size_t n;
    struct sockaddr_storage sa[KVI_REDIS_MAX_ADDRS];
    socklen_t len[KVI_REDIS_MAX_ADDRS];
};

/* Fills *out with the addresses of host: numeric_only = 1 parses an IP
 * address and never calls the resolver (a name then fails); 0 resolves a
 * name with the system resolver (blocking, no deadline).  0, or -1 with the
 * reason in err (errlen bytes). */
int kvi__redis_addrlist_fill(const char *host, int numeric_only, struct kvi_redis_addrlist *out,
                             char *err, size_t errlen);

/* 1 when host is an IP address (v4 or v6, no resolver call). */
int kvi__redis_is_address(const char *host);

struct kvi_redis_names;

/* An empty table (NULL when out of memory) and its release (NULL
 * accepted; no call may use it any more).  The release does not wait for
 * lookups under way: each one's thread frees its entry when it ends. */
struct kvi_redis_names *kvi__redis_names_new(void);
void kvi__redis_names_free(struct kvi_redis_names *t);

/* The addresses of host, kept in t, without waiting: the known ones; an
 * address parsed now; a name not resolved yet: NULL with err "being
 * resolved" while its background lookup runs (started here when none is),
 * or the resolver's reason when it failed (looked up again after 1 s).
 * The result lives as long as t. */
const struct kvi_redis_addrlist *kvi__redis_names_get(struct kvi_redis_names *t, const char *host,
                                                      char *err, size_t errlen);

/* For a blocking connect: when host is a name being looked up in the
 * background (started here if need be), waits until that lookup ends or
 * deadline (monotonic ms; 0 = connect_timeout unset: up to 5 s) passes.
 * Then kvi__redis_names_get says where it stands. */
void kvi__redis_names_wait(struct kvi_redis_names *t, const char *host, int64_t deadline_ms);

/* The addresses of host, resolved now if need be with the system resolver
 * (blocking the calling thread for as long as it takes) and kept: for the
 * URL's hosts, when the URL is defined.  NULL with err when it cannot be
 * resolved (kept as failed: kvi__redis_names_get reports that reason,
 * then looks the name up again in the background from 1 s on). */
const struct kvi_redis_addrlist *kvi__redis_names_resolve_now(struct kvi_redis_names *t,
                                                              const char *host, char *err,
                                                              size_t errlen);

/* Only the known addresses of host, never a resolver call: NULL when
 * host is not in t yet. */
const struct kvi_redis_addrlist *kvi__redis_names_find(const struct kvi_redis_names *t,
                                                       const char *host);

#endif /* KVI_REDIS_RESOLVE_H */
