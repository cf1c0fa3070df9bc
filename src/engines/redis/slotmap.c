/*
 * slotmap.c -- the Redis Cluster slot map (see slotmap.h).
 */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "route.h"
#include "slotmap.h"

/* A map refresh that is not forced happens at most this often. */
#define REFRESH_INTERVAL_MS 100

static const redisReply *map_get(const redisReply *m, const char *key)
{
    if (m == NULL || m->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < m->elements; i += 2) {
        const redisReply *k = m->element[i];
        if ((k->type == REDIS_REPLY_STRING || k->type == REDIS_REPLY_STATUS) &&
            strcmp(k->str, key) == 0)
            return m->element[i + 1];
    }
    return NULL;
}

static int map_str_is(const redisReply *m, const char *key, const char *value)
{
    const redisReply *v = map_get(m, key);
    return v != NULL && v->type == REDIS_REPLY_STRING && strcmp(v->str, value) == 0;
}

static int add_range(struct kvi_redis_range *ranges, size_t *count, size_t cap, long long start,
                     long long end, const char *host, const char *fallback_host, long long port)
{
    if (start < 0 || end >= KVI_REDIS_SLOTS || start > end || port <= 0 || port > 65535 ||
        *count >= cap)
        return -1;
    if (host == NULL || host[0] == '\0' || strcmp(host, "?") == 0)
        host = fallback_host;
    struct kvi_redis_range *r = &ranges[(*count)++];
    r->start = (unsigned)start;
    r->end = (unsigned)end;
    snprintf(r->host, sizeof r->host, "%s", host);
    r->port = (uint16_t)port;
    return 0;
}

/* CLUSTER SHARDS (Redis >= 7): shards of {slots: [s, e, ...], nodes: [...]}
 * with each map a flat key/value array under RESP2. */
static int parse_shards(const redisReply *r, const char *asked, int tls,
                        struct kvi_redis_range *ranges, size_t *count, size_t cap)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *shard = r->element[i];
        const redisReply *slots = map_get(shard, "slots");
        const redisReply *nodes = map_get(shard, "nodes");
        if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY ||
            nodes->type != REDIS_REPLY_ARRAY)
            return -1;
        if (slots->elements == 0)
            continue;
        const redisReply *master = NULL;
        for (size_t j = 0; j < nodes->elements; j++) {
            const redisReply *nd = nodes->element[j];
            if (!map_str_is(nd, "role", "master"))
                continue;
            if (master == NULL || map_str_is(nd, "health", "online"))
                master = nd;
        }
        if (master == NULL)
            continue;
        /* Over TLS the node's TLS port (a node with only a TLS port lists
         * no "port"). */
        const redisReply *port = tls ? map_get(master, "tls-port") : NULL;
        if (port == NULL)
            port = map_get(master, "port");
        const redisReply *ep = map_get(master, "endpoint");
        const redisReply *ip = map_get(master, "ip");
        const char *host = NULL;
        if (ep != NULL && ep->type == REDIS_REPLY_STRING && ep->len > 0 &&
            strcmp(ep->str, "?") != 0)
            host = ep->str;
        else if (ip != NULL && ip->type == REDIS_REPLY_STRING)
            host = ip->str;
        if (port == NULL || port->type != REDIS_REPLY_INTEGER)
            return -1;
        for (size_t j = 0; j + 1 < slots->elements; j += 2) {
            const redisReply *s = slots->element[j], *e = slots->element[j + 1];
            if (s->type != REDIS_REPLY_INTEGER || e->type != REDIS_REPLY_INTEGER ||
                add_range(ranges, count, cap, s->integer, e->integer, host, asked, port->integer) !=
                    0)
                return -1;
        }
    }
    return 0;
}

/* CLUSTER SLOTS: [[start, end, [ip, port, id, ...], replicas...], ...]. */
static int parse_slots(const redisReply *r, const char *asked, struct kvi_redis_range *ranges,
                       size_t *count, size_t cap)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
            return -1;
        const redisReply *m = e->element[2];
        if (e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || m->type != REDIS_REPLY_ARRAY ||
            m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            return -1;
        if (add_range(ranges, count, cap, e->element[0]->integer, e->element[1]->integer,
                      m->element[0]->str, asked, m->element[1]->integer) != 0)
            return -1;
    }
    return 0;
}

/* Upper bound of the slot ranges a SHARDS / SLOTS reply holds (>= 1). */
static size_t max_ranges(const redisReply *r, int shards)
{
    size_t n = 1;
    if (r->type != REDIS_REPLY_ARRAY)
        return n;
    if (!shards)
        return n + r->elements;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *slots = map_get(r->element[i], "slots");
        if (slots != NULL && slots->type == REDIS_REPLY_ARRAY)
            n += slots->elements / 2;
    }
    return n;
}

/* See slotmap.h. */
kvi_status kvi__redis_map_from_reply(kvi_conn *c, const struct kvi_redis_node *n,
                                     const redisReply *r, int shards,
                                     struct kvi_redis_range **ranges, size_t *count)
{
    *ranges = NULL;
    *count = 0;
    if (r->type == REDIS_REPLY_ERROR)
        return kvi__redis_reply_error(c, r);
    size_t cap = max_ranges(r, shards);
    *ranges = kvi_engine_malloc(c, cap * sizeof **ranges);
    if (*ranges == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    const char *asked = n->addr.host != NULL ? n->addr.host : "127.0.0.1";
    int bad = shards ? parse_shards(r, asked, n->cfg.tls != NULL, *ranges, count, cap)
                     : parse_slots(r, asked, *ranges, count, cap);
    if (bad) {
        kvi_engine_free(c, *ranges);
        *ranges = NULL;
        *count = 0;
        return kvi_engine_error(c, KVI_E_PROTOCOL, "unexpected CLUSTER %s reply from %s",
                                shards ? "SHARDS" : "SLOTS", n->addr.name);
    }
    return KVI_OK;
}

/* See slotmap.h. */
kvi_status kvi__redis_fetch_map(kvi_conn *c, struct kvi_redis_node *n,
                                struct kvi_redis_range **ranges, size_t *count)
{
    const char *argv[2] = {"CLUSTER", "SHARDS"};
    size_t lens[2] = {7, 6};
    struct kvi_redis_cmd cmd = {.argc = 2, .argv = argv, .lens = lens, .resend_ok = 1};
    redisReply *r = NULL;
    int shards = 1;

    kvi_status s = kvi__redis_exec_on(c, n, &cmd, &r);
    if (s != KVI_OK)
        return s;
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "cluster support disabled") != NULL) {
        freeReplyObject(r);
        return KVI_E_UNSUPPORTED;
    }
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "nknown") != NULL) {
        /* Before Redis 7: no SHARDS subcommand. */
        freeReplyObject(r);
        argv[1] = "SLOTS";
        lens[1] = 5;
        shards = 0;
        s = kvi__redis_exec_on(c, n, &cmd, &r);
        if (s != KVI_OK)
            return s;
    }
    if (r->type == REDIS_REPLY_ERROR && kvi__redis_starts_with(r->str, r->len, "NOPERM")) {
        /* An ACL user without the CLUSTER command (a standalone set-up's
         * usual least-privilege user).  kvi_engine_error scrubs the
         * password. */
        s = kvi_engine_error(c, KVI_E_AUTH,
                             "%s refused CLUSTER %s, which cluster=auto and cluster=yes use to "
                             "read the cluster map (%s); for a standalone server use cluster=no, "
                             "for a cluster allow the user +cluster|shards +cluster|slots",
                             n->addr.name, shards ? "SHARDS" : "SLOTS", r->str);
        freeReplyObject(r);
        return s;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        s = kvi__redis_reply_error(c, r);
        freeReplyObject(r);
        return s;
    }
    s = kvi__redis_map_from_reply(c, n, r, shards, ranges, count);
    freeReplyObject(r);
    return s;
}

/* See slotmap.h. */
void kvi__redis_install_map(kvi_conn *c, struct kvi_redis_state *st,
                            const struct kvi_redis_range *ranges, size_t count)
{
    pthread_rwlock_wrlock(&st->lock);
    memset(st->slots, 0, KVI_REDIS_SLOTS * sizeof *st->slots);
    for (size_t i = 0; i < count; i++) {
        struct kvi_redis_node *n =
            kvi__redis_node_get_locked(c, st, ranges[i].host, ranges[i].port);
        for (unsigned s = ranges[i].start; n != NULL && s <= ranges[i].end; s++)
            st->slots[s] = n;
    }
    atomic_store(&st->have_map, 1);
    atomic_store(&st->map_stale, NULL);
    pthread_rwlock_unlock(&st->lock);
}

/* See slotmap.h. */
kvi_status kvi__redis_refresh_map(kvi_conn *c, struct kvi_redis_state *st, int force)
{
    int64_t now = kvi_monotonic_ms();
    int_least64_t last = atomic_load(&st->last_refresh_ms);

    if (!force && (now - last < REFRESH_INTERVAL_MS ||
                   !atomic_compare_exchange_strong(&st->last_refresh_ms, &last, now)))
        return KVI_OK;
    if (force)
        atomic_store(&st->last_refresh_ms, now);
    struct kvi_redis_node **nodes = NULL;
    size_t count = 0;
    kvi_status s = kvi__redis_node_snapshot(c, st, &nodes, &count);
    if (s != KVI_OK)
        return s;
    s = kvi_engine_error(c, KVI_E_CONNECT, "no cluster node known");
    for (size_t i = 0; i < count; i++) {
        struct kvi_redis_range *ranges = NULL;
        size_t nranges = 0;
        s = kvi__redis_fetch_map(c, nodes[i], &ranges, &nranges);
        if (s == KVI_OK) {
            kvi__redis_install_map(c, st, ranges, nranges);
            kvi_engine_free(c, ranges);
            break;
        }
        if (s == KVI_E_UNSUPPORTED)
            s = kvi_engine_error(c, KVI_E_BACKEND, "%s is not a cluster node", nodes[i]->addr.name);
        if (s == KVI_E_AUTH || s == KVI_E_NOMEM)
            break;
    }
    kvi_engine_free(c, nodes);
    return s;
}

/* See slotmap.h. */
struct kvi_redis_node *kvi__redis_slot_node(struct kvi_redis_state *st, int slot)
{
    struct kvi_redis_node *n = NULL;

    pthread_rwlock_rdlock(&st->lock);
    if (slot >= 0) {
        n = st->slots[slot];
    } else {
        /* A command without key: spread over the masters. */
        unsigned start = (atomic_fetch_add(&st->rr, 1) * 5471u) % KVI_REDIS_SLOTS;
        for (unsigned i = 0; i < KVI_REDIS_SLOTS && n == NULL; i += 64)
            n = st->slots[(start + i) % KVI_REDIS_SLOTS];
    }
    pthread_rwlock_unlock(&st->lock);
    return n;
}

/* See slotmap.h. */
struct kvi_redis_node *kvi__redis_key_node(struct kvi_redis_state *st, const void *key,
                                           size_t key_len)
{
    return kvi__redis_slot_node(st, (int)kvi__redis_key_slot(key, key_len));
}

/* See slotmap.h. */
void kvi__redis_slot_moved(struct kvi_redis_state *st, int slot, struct kvi_redis_node *n)
{
    pthread_rwlock_wrlock(&st->lock);
    st->slots[slot] = n;
    pthread_rwlock_unlock(&st->lock);
}

/* See slotmap.h. */
kvi_status kvi__redis_map_masters(kvi_conn *c, struct kvi_redis_state *st,
                                  struct kvi_redis_node ***nodes, size_t *count)
{
    if (!atomic_load(&st->have_map)) {
        kvi_status s = kvi__redis_refresh_map(c, st, 1);
        if (s != KVI_OK)
            return s;
    }
    struct kvi_redis_node **arr = kvi_engine_malloc(c, 64 * sizeof *arr);
    size_t n = 0, cap = 64;
    if (arr == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    pthread_rwlock_rdlock(&st->lock);
    for (unsigned sl = 0; sl < KVI_REDIS_SLOTS; sl++) {
        struct kvi_redis_node *nd = st->slots[sl];
        if (nd == NULL || (n > 0 && arr[n - 1] == nd))
            continue;
        size_t j;
        for (j = 0; j < n && arr[j] != nd; j++)
            ;
        if (j < n)
            continue;
        if (n == cap) {
            struct kvi_redis_node **grown = kvi_engine_realloc(c, arr, cap * 2 * sizeof *arr);
            if (grown == NULL)
                break;
            arr = grown;
            cap *= 2;
        }
        arr[n++] = nd;
    }
    pthread_rwlock_unlock(&st->lock);
    if (n == 0) {
        kvi_engine_free(c, arr);
        return kvi_engine_error(c, KVI_E_BACKEND, "the cluster map has no master");
    }
    *nodes = arr;
    *count = n;
    return KVI_OK;
}
