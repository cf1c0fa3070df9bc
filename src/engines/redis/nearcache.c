/*
 * nearcache.c -- the near cache of the redis engine (see nearcache.h and
 * docs/engines/redis.md, "Near cache").
 *
 * Invariants, all under nc->mu:
 *   - an entry exists only while the invalidation connection is subscribed
 *     (state NC_UP); every way out of NC_UP flushes the table;
 *   - every received invalidation message is applied before an entry is
 *     served (drain before each hit) and before a fetched value is kept
 *     (drain after its reply);
 *   - a fetch whose key was invalidated, dropped by an own write or flushed
 *     while its GET was under way is marked spoiled and keeps nothing;
 *   - an entry never outlives the key's TTL as the server reported it,
 *     counted from before the GET was sent.
 */
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dispatch.h"
#include "error.h"
#include "nearcache.h"

#define CHANNEL "__redis__:invalidate"
/* Pause between two attempts to subscribe after one failed. */
#define RETRY_MS 1000
/* Silence on the invalidation connection after which a PING asks it for a
 * sign of life (see alive()). */
#define CHECK_MS 1000

struct nc_entry {
    struct nc_entry *hnext;       /* hash chain */
    struct nc_entry *prev, *next; /* recency list: head = most recently used */
    uint64_t hash;
    int64_t expires_ms; /* kvi_monotonic_ms() bound; INT64_MAX: no TTL */
    size_t key_len, val_len;
    unsigned char data[]; /* the key, then the value */
};

/* A cached fetch under way (on its thread's stack while its GET runs). */
struct nc_pending {
    struct nc_pending *prev, *next;
    const void *key;
    size_t key_len;
    uint64_t hash;
    int spoiled; /* invalidated, written or flushed meanwhile: keep nothing */
};

enum { NC_DOWN = 0, NC_CONNECTING, NC_UP };

struct kvi_redis_nc {
    pthread_mutex_t mu;
    size_t max_entries, max_value;
    struct nc_entry **buckets;
    size_t mask;
    struct nc_entry *head, *tail;
    size_t count, bytes;
    struct nc_pending *pending;
    int link;                    /* NC_* */
    struct kvi_redis_conn inv;   /* subscribed to CHANNEL while NC_UP */
    struct kvi_redis_node *node; /* the server inv talks to */
    long long client_id;         /* inv's CLIENT ID: the REDIRECT target */
    uint64_t epoch;              /* of the subscription standing (0: none) */
    uint64_t epochs;             /* subscriptions made so far */
    int64_t retry_at_ms;         /* no new subscription before */
    int64_t last_rx_ms;          /* when inv last brought a message */
    int64_t ping_sent_ms;        /* a PING awaits its answer since (0: none) */
    uint64_t tracked_closed;     /* kvi__redis_tracked_closed() at the last check */
    uint32_t timeout_ms;         /* the server's answer time (URL timeout) */
    int failure_logged;          /* a failed subscription was logged since the last one */
    int refusal_logged;          /* CLIENT TRACKING refused was logged (once per process) */
    /* A message to log once the mutex is let go (a log hook may call into
     * kvi); the first one wins until it is written. */
    char log_msg[480];
    int log_level; /* kvi_log_level; 0: nothing pending */
    uint64_t hits;  /* fetches that found their key (here or at the server) */
    uint64_t near_hits, expired, evicted;
};

static uint64_t hash_key(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static struct nc_entry **slot_of(struct kvi_redis_nc *nc, uint64_t h)
{
    return &nc->buckets[(size_t)h & nc->mask];
}

static struct nc_entry *find(struct kvi_redis_nc *nc, const void *key, size_t len, uint64_t h)
{
    for (struct nc_entry *e = *slot_of(nc, h); e != NULL; e = e->hnext)
        if (e->hash == h && e->key_len == len && memcmp(e->data, key, len) == 0)
            return e;
    return NULL;
}

static void list_unlink(struct kvi_redis_nc *nc, struct nc_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        nc->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        nc->tail = e->prev;
}

static void list_push(struct kvi_redis_nc *nc, struct nc_entry *e)
{
    e->prev = NULL;
    e->next = nc->head;
    if (nc->head != NULL)
        nc->head->prev = e;
    nc->head = e;
    if (nc->tail == NULL)
        nc->tail = e;
}

static void entry_free(kvi_conn *c, struct kvi_redis_nc *nc, struct nc_entry *e)
{
    struct nc_entry **pp = slot_of(nc, e->hash);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    list_unlink(nc, e);
    nc->count--;
    nc->bytes -= e->key_len + e->val_len;
    kvi_engine_free(c, e);
}

/* Spoils the fetches of key under way (all of them when key is NULL). */
static void spoil(struct kvi_redis_nc *nc, const void *key, size_t len, uint64_t h)
{
    for (struct nc_pending *p = nc->pending; p != NULL; p = p->next)
        if (key == NULL ||
            (p->hash == h && p->key_len == len && memcmp(p->key, key, len) == 0))
            p->spoiled = 1;
}

static void forget_key(kvi_conn *c, struct kvi_redis_nc *nc, const void *key, size_t len)
{
    uint64_t h = hash_key(key, len);
    struct nc_entry *e = find(nc, key, len, h);
    if (e != NULL)
        entry_free(c, nc, e);
    spoil(nc, key, len, h);
}

static void flush(kvi_conn *c, struct kvi_redis_nc *nc)
{
    while (nc->head != NULL)
        entry_free(c, nc, nc->head);
    spoil(nc, NULL, 0, 0);
}

static void insert(kvi_conn *c, struct kvi_redis_nc *nc, const void *key, size_t key_len,
                   uint64_t h, const void *val, size_t val_len, int64_t expires_ms)
{
    struct nc_entry *e = find(nc, key, key_len, h);
    if (e != NULL)
        entry_free(c, nc, e);
    if (nc->count >= nc->max_entries && nc->tail != NULL) {
        entry_free(c, nc, nc->tail);
        nc->evicted++;
    }
    e = kvi_engine_malloc(c, sizeof *e + key_len + val_len);
    if (e == NULL)
        return; /* not kept: the next fetch asks the server */
    e->hash = h;
    e->expires_ms = expires_ms;
    e->key_len = key_len;
    e->val_len = val_len;
    memcpy(e->data, key, key_len);
    if (val_len > 0)
        memcpy(e->data + key_len, val, val_len);
    struct nc_entry **slot = slot_of(nc, h);
    e->hnext = *slot;
    *slot = e;
    list_push(nc, e);
    nc->count++;
    nc->bytes += key_len + val_len;
}

/* Keeps a message for unlock_and_log(), with nc->mu held. */
static void nc_log(struct kvi_redis_nc *nc, kvi_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nc_log(struct kvi_redis_nc *nc, kvi_log_level level, const char *fmt, ...)
{
    if (nc->log_level != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nc->log_msg, sizeof nc->log_msg, fmt, ap);
    va_end(ap);
    nc->log_level = (int)level;
}

/* Lets nc->mu go, then logs what nc_log() kept (never under the mutex: a
 * log hook that calls kvi would wait for it). */
static void unlock_and_log(kvi_conn *c, struct kvi_redis_nc *nc)
{
    char msg[sizeof nc->log_msg];
    int level = nc->log_level;
    if (level != 0) {
        memcpy(msg, nc->log_msg, sizeof msg);
        nc->log_level = 0;
    }
    pthread_mutex_unlock(&nc->mu);
    if (level != 0)
        kvi_engine_log(c, (kvi_log_level)level, "%s", msg);
}

/* Leaves NC_UP: flushes the table (nothing may be served once the
 * invalidations can be lost) and closes the connection.  A new
 * subscription is tried from retry_in_ms on. */
static void lose(kvi_conn *c, struct kvi_redis_nc *nc, const char *why, int64_t retry_in_ms)
{
    if (nc->link != NC_UP)
        return;
    flush(c, nc);
    kvi__redis_conn_close(&nc->inv);
    nc->link = NC_DOWN;
    nc->epoch = 0;
    nc->retry_at_ms = kvi_monotonic_ms() + retry_in_ms;
    if (why != NULL)
        nc_log(nc, KVI_LOG_WARN,
               "near cache: %s; flushed, fetches go to the server until a new subscription "
               "stands",
               why);
}

static int is_word(const redisReply *r, const char *w)
{
    size_t n = strlen(w);
    return r->type == REDIS_REPLY_STRING && r->len == n && strncasecmp(r->str, w, n) == 0;
}

/* Applies one message of the invalidation connection: 1 done, 0 not
 * understood (the caller gives the connection up). */
static int apply(kvi_conn *c, struct kvi_redis_nc *nc, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return 0;
    if (is_word(r->element[0], "pong")) {
        nc->ping_sent_ms = 0;
        return 1;
    }
    if (is_word(r->element[0], "subscribe"))
        return 1;
    if (r->elements != 3 || !is_word(r->element[0], "message") || !is_word(r->element[1], CHANNEL))
        return 0;
    const redisReply *keys = r->element[2];
    if (keys->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < keys->elements; i++) {
            if (keys->element[i]->type != REDIS_REPLY_STRING) {
                flush(c, nc);
                return 1;
            }
            forget_key(c, nc, keys->element[i]->str, keys->element[i]->len);
        }
    } else if (keys->type == REDIS_REPLY_STRING) {
        forget_key(c, nc, keys->str, keys->len);
    } else {
        /* nil: FLUSHALL/FLUSHDB (or anything unforeseen): drop everything. */
        flush(c, nc);
    }
    return 1;
}

/* Applies every invalidation received so far, without waiting: 1 while
 * subscribed, 0 when the connection is (or just got) lost. */
static int drain(kvi_conn *c, struct kvi_redis_nc *nc)
{
    if (nc->link != NC_UP)
        return 0;
    for (;;) {
        redisReply *r = NULL;
        int got = kvi__redis_conn_read(&nc->inv, 0, &r);
        if (got == 0)
            return 1;
        if (got < 0) {
            char why[400];
            snprintf(why, sizeof why, "invalidation connection lost (%s)", nc->inv.err);
            lose(c, nc, why, 0);
            return 0;
        }
        nc->last_rx_ms = kvi_monotonic_ms();
        int ok = apply(c, nc, r);
        freeReplyObject(r);
        if (!ok) {
            lose(c, nc, "unexpected message on the invalidation connection", RETRY_MS);
            return 0;
        }
    }
}

/* Opens conn to node, asks its CLIENT ID and subscribes it to CHANNEL, all
 * within the timeouts.  No engine error is set (a failure only means
 * fetches bypass the cache): the reason is in conn->err. */
static int subscribe(kvi_conn *c, struct kvi_redis_node *node, struct kvi_redis_conn *conn,
                     long long *id)
{
    const struct kvi_redis_node_cfg *cfg = &node->cfg;
    struct kvi_redis_conn_cfg cc;
    (void)c;
    kvi__redis_conn_cfg(cfg, &node->addr, &node->tls_cache, KVI_REDIS_ROLE_DATA, &cc);
    if (kvi__redis_conn_open(conn, &cc, kvi__redis_deadline_after(cfg->connect_timeout_ms)) !=
        KVI_OK)
        return -1;
    const char *a1[2] = {"CLIENT", "ID"};
    size_t l1[2] = {6, 2};
    const char *a2[2] = {"SUBSCRIBE", CHANNEL};
    size_t l2[2] = {9, sizeof CHANNEL - 1};
    if (kvi__redis_conn_append(conn, 2, a1, l1) != 0 || kvi__redis_conn_append(conn, 2, a2, l2) != 0)
        return -1;
    int64_t deadline = kvi__redis_deadline_after(cfg->timeout_ms);
    redisReply *r1 = NULL, *r2 = NULL;
    if (kvi__redis_conn_reply(conn, deadline, &r1) != KVI_OK)
        return -1;
    int ok = r1->type == REDIS_REPLY_INTEGER && r1->integer > 0;
    if (ok)
        *id = r1->integer;
    else
        snprintf(conn->err, sizeof conn->err, "CLIENT ID refused: %.200s",
                 r1->type == REDIS_REPLY_ERROR ? r1->str : "unexpected reply");
    freeReplyObject(r1);
    if (kvi__redis_conn_reply(conn, deadline, &r2) != KVI_OK)
        return -1;
    if (ok && !(r2->type == REDIS_REPLY_ARRAY && r2->elements == 3 &&
                is_word(r2->element[0], "subscribe"))) {
        snprintf(conn->err, sizeof conn->err, "SUBSCRIBE %s refused: %.200s", CHANNEL,
                 r2->type == REDIS_REPLY_ERROR ? r2->str : "unexpected reply");
        ok = 0;
    }
    freeReplyObject(r2);
    return ok ? 0 : -1;
}

/* With nc->mu held, after a drain: 1 while the subscription shows life, so
 * that a connection that died without a word (no reset: a network cut)
 * cannot keep entries served.  After CHECK_MS without a message a PING is
 * sent; no answer within the timeout loses the subscription; entries are
 * served only while a message came within CHECK_MS + timeout. */
static int alive(kvi_conn *c, struct kvi_redis_nc *nc)
{
    int64_t now = kvi_monotonic_ms();
    if (nc->ping_sent_ms != 0 && now - nc->ping_sent_ms > (int64_t)nc->timeout_ms) {
        lose(c, nc, "the invalidation connection did not answer a PING in time", 0);
        return 0;
    }
    if (nc->ping_sent_ms == 0 && now - nc->last_rx_ms >= CHECK_MS) {
        const char *a[1] = {"PING"};
        size_t l[1] = {4};
        if (kvi__redis_conn_append(&nc->inv, 1, a, l) != 0) {
            lose(c, nc, "out of memory for a PING", 0);
            return 0;
        }
        nc->ping_sent_ms = now;
    }
    if (nc->inv.opos < nc->inv.olen && kvi__redis_conn_flush(&nc->inv) < 0) {
        lose(c, nc, "cannot write a PING to the invalidation connection", 0);
        return 0;
    }
    return now - nc->last_rx_ms <= CHECK_MS + (int64_t)nc->timeout_ms;
}

/* With nc->mu held: 1 when subscribed on node, drained and alive.  Subscribes
 * when due (the mutex is let go meanwhile: one thread connects, the
 * others bypass the cache). */
static int ready(kvi_conn *c, struct kvi_redis_nc *nc, struct kvi_redis_node *node)
{
    if (nc->link == NC_UP && nc->node != node) {
        char why[300];
        snprintf(why, sizeof why, "the server is now %s", kvi__redis_node_name(node));
        lose(c, nc, why, 0);
    }
    if (nc->link == NC_UP) {
        /* A pooled connection that tracked keys was closed: the server
         * sends nothing more for what it read, so nothing kept may be
         * served (and no fetch under way kept).  Idle ones the server
         * closed (its `timeout`, CLIENT KILL) are found here, before the
         * hit, not at their next borrow. */
        kvi__redis_node_reap_tracked(c, node);
        uint64_t closed = kvi__redis_tracked_closed();
        if (closed != nc->tracked_closed) {
            nc->tracked_closed = closed;
            flush(c, nc);
        }
        return drain(c, nc) && alive(c, nc);
    }
    if (nc->link == NC_CONNECTING || kvi_monotonic_ms() < nc->retry_at_ms)
        return 0;
    nc->link = NC_CONNECTING;
    pthread_mutex_unlock(&nc->mu);
    struct kvi_redis_conn conn;
    long long id = 0;
    int s = subscribe(c, node, &conn, &id);
    pthread_mutex_lock(&nc->mu);
    if (s != 0) {
        if (!nc->failure_logged)
            nc_log(nc, KVI_LOG_WARN,
                   "near cache: cannot subscribe to invalidations: %s; fetches go to the server, "
                   "retried every %d ms",
                   conn.err, RETRY_MS);
        nc->failure_logged = 1;
        kvi__redis_conn_close(&conn);
        nc->link = NC_DOWN;
        nc->retry_at_ms = kvi_monotonic_ms() + RETRY_MS;
        return 0;
    }
    if (nc->failure_logged)
        nc_log(nc, KVI_LOG_INFO, "near cache: subscribed to invalidations on %s",
               kvi__redis_node_name(node));
    nc->failure_logged = 0;
    flush(c, nc); /* empty already; spoils fetches begun before */
    nc->inv = conn;
    nc->node = node;
    nc->client_id = id;
    nc->epoch = ++nc->epochs;
    nc->link = NC_UP;
    nc->last_rx_ms = kvi_monotonic_ms();
    nc->ping_sent_ms = 0;
    nc->timeout_ms = node->cfg.timeout_ms;
    return drain(c, nc) && alive(c, nc);
}

/* Frees nc (NULL: nothing).  own 0: a parent process's after fork: its
 * mutex is not touched, its socket closed without a word. */
static void nc_free(kvi_conn *c, struct kvi_redis_nc *nc, int own)
{
    if (nc == NULL)
        return;
    /* No pending fetch is left: the connection is being closed. */
    nc->pending = NULL;
    while (nc->head != NULL)
        entry_free(c, nc, nc->head);
    if (nc->link == NC_UP)
        kvi__redis_conn_close(&nc->inv);
    if (own)
        pthread_mutex_destroy(&nc->mu);
    kvi_engine_free(c, nc->buckets);
    kvi_engine_free(c, nc);
}

/* This process's near cache, made on first use; NULL when out of memory. */
static struct kvi_redis_nc *nc_of(kvi_conn *c, struct kvi_redis_state *st)
{
    struct kvi_redis_nc *nc = atomic_load(&st->nc);
    if (nc != NULL)
        return nc;
    const struct kvi_redis_cfg *cfg = &kvi__redis_priv(c)->cfg;
    nc = kvi_engine_malloc(c, sizeof *nc);
    if (nc == NULL)
        return NULL;
    memset(nc, 0, sizeof *nc);
    size_t nb = 16;
    while (nb < cfg->client_cache)
        nb *= 2;
    nc->buckets = kvi_engine_malloc(c, nb * sizeof *nc->buckets);
    if (nc->buckets == NULL) {
        kvi_engine_free(c, nc);
        return NULL;
    }
    memset(nc->buckets, 0, nb * sizeof *nc->buckets);
    nc->mask = nb - 1;
    nc->max_entries = cfg->client_cache;
    nc->max_value = cfg->client_cache_max_value;
    nc->inv.sock.fd = -1;
    pthread_mutex_init(&nc->mu, NULL);
    struct kvi_redis_nc *none = NULL;
    if (!atomic_compare_exchange_strong(&st->nc, &none, nc)) {
        nc_free(c, nc, 1);
        return none;
    }
    return nc;
}

/* The server fetches go to (standalone: the failover list's current host;
 * Sentinel: the master named), or NULL when not known yet. */
static struct kvi_redis_node *target(kvi_conn *c, struct kvi_redis_state *st)
{
    if (kvi__redis_priv(c)->cfg.sentinel != NULL)
        return atomic_load(&st->master);
    size_t cur = atomic_load(&st->current);
    return cur < st->nseeds ? st->seeds[cur] : NULL;
}

/* What one round trip of a cached fetch brought back. */
struct fetched {
    redisReply *val; /* the GET's string reply, or NULL */
    long long pttl;  /* the PTTL reply; -2 when unknown */
    int tracked;     /* the connection's tracking redirects to the subscription */
    int fallback;    /* nothing known: fetch the usual way */
    int refused_now; /* CLIENT TRACKING was answered, and not with OK */
    char refused[200]; /* CLIENT TRACKING's error text */
};

/* CLIENT TRACKING on REDIRECT id (when this pooled connection does not
 * redirect to the subscription of epoch yet), GET key and PTTL key in one
 * round trip on a pooled connection to node. */
static kvi_status roundtrip(kvi_conn *c, struct kvi_redis_node *node, const void *key,
                           size_t key_len, uint64_t epoch, long long id, struct fetched *f)
{
    const struct kvi_redis_node_cfg *cfg = &kvi__redis_priv(c)->node_cfg;
    struct kvi_redis_link *l;
    int probe, reused = 0;

    kvi_status s = kvi_breaker_enter(c, node->breaker, node->addr.name, &probe);
    if (s != KVI_OK) {
        f->fallback = 1; /* the failover list may know another host */
        return s;
    }
    s = kvi__redis_link_borrow(c, node, &l, &reused);
    if (s != KVI_OK) {
        kvi_breaker_leave(c, node->breaker, node->addr.name, probe, s);
        f->fallback = s == KVI_E_CONNECT;
        return s;
    }
    char idtext[24];
    int track = l->nc_epoch != epoch;
    /* NOLOOP: no message for this connection's own writes; the write's
     * caller drops the entry itself (kvi__redis_nc_drop). */
    const char *ta[6] = {"CLIENT", "TRACKING", "on", "REDIRECT", idtext, "NOLOOP"};
    size_t tl[6] = {6, 8, 2, 8, (size_t)snprintf(idtext, sizeof idtext, "%lld", id), 6};
    const char *ga[2] = {"GET", key}, *pa[2] = {"PTTL", key};
    size_t gl[2] = {3, key_len}, pl[2] = {4, key_len};
    int n = 0;
    redisReply *r[3] = {NULL, NULL, NULL};
    if ((track && kvi__redis_conn_append(&l->conn, 6, ta, tl) != 0) ||
        kvi__redis_conn_append(&l->conn, 2, ga, gl) != 0 ||
        kvi__redis_conn_append(&l->conn, 2, pa, pl) != 0) {
        s = kvi_engine_error(c, l->conn.st, "%s", l->conn.err);
    } else {
        int64_t deadline = kvi__redis_deadline_after(cfg->timeout_ms);
        for (n = 0; n < track + 2; n++)
            if ((s = kvi__redis_get_reply(c, &l->conn, deadline, &r[n])) != KVI_OK)
                break;
    }
    kvi_breaker_leave(c, node->breaker, node->addr.name, probe, n > 0 ? KVI_OK : s);
    if (s != KVI_OK) {
        for (int i = 0; i < n; i++)
            freeReplyObject(r[i]);
        kvi__redis_link_drop(c, l);
        /* A pooled connection that broke before answering: the server
         * closed it meanwhile (restart); the usual path sends it again. */
        f->fallback = n == 0 && reused && kvi__redis_retryable(s);
        return s;
    }
    redisReply *t = track ? r[0] : NULL, *g = r[track], *p = r[track + 1];
    f->tracked = !track || (t->type == REDIS_REPLY_STATUS && t->len == 2 && memcmp(t->str, "OK", 2) == 0);
    if (track && f->tracked)
        l->nc_epoch = epoch;
    else if (track) {
        f->refused_now = 1;
        snprintf(f->refused, sizeof f->refused, "%.190s",
                 t->type == REDIS_REPLY_ERROR ? t->str : "unexpected reply");
    }
    freeReplyObject(t);
    f->pttl = p->type == REDIS_REPLY_INTEGER ? p->integer : -2;
    freeReplyObject(p);
    kvi__redis_link_give(c, node, l);
    if (g->type == REDIS_REPLY_STRING) {
        f->val = g;
        return KVI_OK;
    }
    if (g->type == REDIS_REPLY_NIL) {
        freeReplyObject(g);
        return KVI_NOT_FOUND;
    }
    if (kvi__redis_is_error_kind(g, "LOADING")) {
        freeReplyObject(g);
        f->fallback = 1; /* the usual path waits for the data */
        return KVI_E_BACKEND;
    }
    return kvi__redis_unexpected(c, g, "GET");
}

/* See nearcache.h. */
int kvi__redis_nc_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out,
                        kvi_status *st)
{
    struct kvi_redis *rp = kvi__redis_priv(c);
    if (rp->cfg.client_cache == 0)
        return 0;
    int mode = atomic_load(&rp->mode);
    if (mode == KVI_REDIS_MODE_CLUSTER) {
        *st = kvi_engine_error(c, KVI_E_INVALID,
                               "client_cache: the near cache works with a standalone server, a "
                               "failover list or Sentinel, not with a Redis Cluster; remove the "
                               "option");
        return 1;
    }
    struct kvi_redis_state *s;
    if (mode != KVI_REDIS_MODE_STANDALONE || kvi__redis_state_get(c, &s) != KVI_OK)
        return 0;
    struct kvi_redis_nc *nc = nc_of(c, s);
    struct kvi_redis_node *node = target(c, s);
    if (nc == NULL || node == NULL)
        return 0;

    uint64_t h = hash_key(key, key_len);
    pthread_mutex_lock(&nc->mu);
    if (!ready(c, nc, node)) {
        unlock_and_log(c, nc);
        return 0;
    }
    struct nc_entry *e = find(nc, key, key_len, h);
    if (e != NULL && kvi_monotonic_ms() < e->expires_ms) {
        list_unlink(nc, e);
        list_push(nc, e);
        nc->hits++;
        nc->near_hits++;
        *st = kvi_value_set(c, out, e->data + e->key_len, e->val_len);
        unlock_and_log(c, nc);
        return 1;
    }
    if (e != NULL) {
        entry_free(c, nc, e);
        nc->expired++;
    }
    struct nc_pending p = {.key = key, .key_len = key_len, .hash = h};
    p.next = nc->pending;
    if (p.next != NULL)
        p.next->prev = &p;
    nc->pending = &p;
    uint64_t epoch = nc->epoch;
    long long id = nc->client_id;
    unlock_and_log(c, nc);

    /* Counted from before the request: the entry dies no later than the
     * key does on the server. */
    int64_t sent_ms = kvi_monotonic_ms();
    struct fetched f = {.pttl = -2};
    kvi_status rs = roundtrip(c, node, key, key_len, epoch, id, &f);

    pthread_mutex_lock(&nc->mu);
    /* Whatever arrived before the reply was read is applied first, so that
     * an invalidation of this key spoils what the GET brought. */
    int up = drain(c, nc) && nc->epoch == epoch;
    if (rs == KVI_OK && up && f.tracked && !p.spoiled && (f.pttl > 0 || f.pttl == -1) &&
        f.val->len <= nc->max_value)
        insert(c, nc, key, key_len, h, f.val->str, f.val->len,
               f.pttl > 0 ? sent_ms + f.pttl : INT64_MAX);
    if (rs == KVI_OK && !f.fallback)
        nc->hits++;
    /* Only a refusal read from the server: a round trip that failed
     * (timeout, cut) kept nothing and says nothing about tracking. */
    if (f.refused_now && up) {
        char why[300];
        snprintf(why, sizeof why,
                 "CLIENT TRACKING refused (%s); tried again every %d ms, this message is not "
                 "repeated",
                 f.refused, RETRY_MS);
        /* (Redis < 6 or an ACL without it refuses every time: said once.) */
        lose(c, nc, nc->refusal_logged ? NULL : why, RETRY_MS);
        nc->refusal_logged = 1;
    }
    if (p.prev != NULL)
        p.prev->next = p.next;
    else
        nc->pending = p.next;
    if (p.next != NULL)
        p.next->prev = p.prev;
    unlock_and_log(c, nc);

    if (f.fallback)
        return 0;
    if (rs == KVI_OK) {
        rs = kvi_value_set(c, out, f.val->str, f.val->len);
        freeReplyObject(f.val);
    }
    *st = rs;
    return 1;
}

/* This process's near cache if it exists, else NULL. */
static struct kvi_redis_nc *existing(kvi_conn *c)
{
    struct kvi_redis *rp = kvi__redis_priv(c);
    struct kvi_redis_state *s;
    if (rp->cfg.client_cache == 0 || kvi__redis_state_get(c, &s) != KVI_OK)
        return NULL;
    return atomic_load(&s->nc);
}

/* See nearcache.h. */
void kvi__redis_nc_drop(kvi_conn *c, const void *key, size_t key_len)
{
    struct kvi_redis_nc *nc = existing(c);
    if (nc == NULL)
        return;
    pthread_mutex_lock(&nc->mu);
    forget_key(c, nc, key, key_len);
    pthread_mutex_unlock(&nc->mu);
}

/* See nearcache.h. */
void kvi__redis_nc_found(kvi_conn *c)
{
    struct kvi_redis_nc *nc = existing(c);
    if (nc == NULL)
        return;
    pthread_mutex_lock(&nc->mu);
    nc->hits++;
    pthread_mutex_unlock(&nc->mu);
}

/* See nearcache.h. */
void kvi__redis_nc_drop_all(kvi_conn *c)
{
    struct kvi_redis_nc *nc = existing(c);
    if (nc == NULL)
        return;
    pthread_mutex_lock(&nc->mu);
    flush(c, nc);
    pthread_mutex_unlock(&nc->mu);
}

/* See nearcache.h. */
kvi_status kvi__redis_nc_stats(kvi_conn *c, kvi_stats *out)
{
    if (kvi__redis_priv(c)->cfg.client_cache == 0)
        return KVI_OK;
    out->has_content = 1;
    struct kvi_redis_nc *nc = existing(c);
    if (nc == NULL)
        return KVI_OK;
    pthread_mutex_lock(&nc->mu);
    out->entries = nc->count;
    out->bytes = nc->bytes;
    out->hits = nc->hits;
    out->near_hits = nc->near_hits;
    out->expired = nc->expired;
    out->evicted = nc->evicted;
    pthread_mutex_unlock(&nc->mu);
    return KVI_OK;
}

/* See nearcache.h. */
void kvi__redis_nc_close(kvi_conn *c)
{
    for (struct kvi_redis_state *st = atomic_load(&kvi__redis_priv(c)->state); st != NULL;
         st = st->retired)
        nc_free(c, atomic_exchange(&st->nc, NULL), st->pid == getpid());
}
