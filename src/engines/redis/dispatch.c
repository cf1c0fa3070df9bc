/*
 * dispatch.c -- routing of the redis engine's commands (see dispatch.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "error.h"
#include "route.h"
#include "sentinel.h"
#include "slotmap.h"

/* Redirections and retries one call may take in a cluster. */
#define MAX_ATTEMPTS 16
/* Backoff before retrying TRYAGAIN, CLUSTERDOWN or an unreachable master:
 * 10, 20, 40, ... ms, at most MAX_SLEEPS times per call. */
#define BACKOFF_FIRST_MS 10
#define MAX_SLEEPS 6

/* A new state for this process from c's settings (the URL's hosts as
 * seeds). */
static struct kvi_redis_state *new_state(kvi_conn *c)
{
    const struct kvi_redis *rp = kvi__redis_priv(c);
    struct kvi_redis_seeds seeds = {.hosts = rp->cfg.hosts,
                                    .nhosts = rp->cfg.nhosts,
                                    .socket = rp->cfg.socket,
                                    .sentinels = rp->cfg.sentinel != NULL};
    return kvi__redis_state_new(c, &rp->node_cfg, &seeds);
}

/* See dispatch.h. */
kvi_status kvi__redis_state_get(kvi_conn *c, struct kvi_redis_state **out)
{
    struct kvi_redis *r = kvi__redis_priv(c);
    struct kvi_redis_state *st = atomic_load(&r->state);

    if (st->fork_gen == kvi__redis_fork_gen()) {
        *out = st;
        return KVI_OK;
    }
    struct kvi_redis_state *fresh = new_state(c);
    if (fresh == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    fresh->retired = st;
    if (!atomic_compare_exchange_strong(&r->state, &st, fresh)) {
        /* Another thread of this child won; st is its state now. */
        fresh->retired = NULL;
        kvi__redis_state_free(c, fresh);
    } else {
        st = fresh;
    }
    *out = st;
    return KVI_OK;
}

/* Decides standalone or cluster (cluster=auto asks the first seed that
 * answers). */
static kvi_status ensure_mode(kvi_conn *c, struct kvi_redis_state *st)
{
    struct kvi_redis *rp = kvi__redis_priv(c);
    const struct kvi_redis_cfg *cfg = &rp->cfg;

    if (atomic_load(&rp->mode) != KVI_REDIS_MODE_UNKNOWN)
        return KVI_OK;
    if (cfg->cluster == KVI_REDIS_CLUSTER_NO || cfg->socket != NULL || cfg->sentinel != NULL) {
        atomic_store(&rp->mode, KVI_REDIS_MODE_STANDALONE);
        return KVI_OK;
    }
    if (cfg->cluster == KVI_REDIS_CLUSTER_YES) {
        kvi_status s = kvi__redis_refresh_map(c, st, 1);
        if (s == KVI_OK)
            atomic_store(&rp->mode, KVI_REDIS_MODE_CLUSTER);
        return s;
    }
    kvi_status s = KVI_E_CONNECT;
    size_t first = atomic_load(&st->current);
    for (size_t i = 0; i < st->nseeds; i++) {
        size_t idx = (first + i) % st->nseeds;
        struct kvi_redis_range *ranges = NULL;
        size_t nranges = 0;
        s = kvi__redis_fetch_map(c, st->seeds[idx], &ranges, &nranges);
        if (s == KVI_E_UNSUPPORTED) {
            atomic_store(&st->current, idx);
            atomic_store(&rp->mode, KVI_REDIS_MODE_STANDALONE);
            return KVI_OK;
        }
        if (s == KVI_OK) {
            kvi__redis_install_map(c, st, ranges, nranges);
            kvi_engine_free(c, ranges);
            atomic_store(&st->last_refresh_ms, kvi_monotonic_ms());
            atomic_store(&rp->mode, KVI_REDIS_MODE_CLUSTER);
            return KVI_OK;
        }
        if (s != KVI_E_CONNECT && s != KVI_E_TIMEOUT && s != KVI_E_IO)
            return s;
    }
    return s;
}

/* A failure that no other host or retry can cure. */
static int fatal(kvi_status s)
{
    return s == KVI_E_AUTH || s == KVI_E_NOMEM || s == KVI_E_INVALID;
}

static kvi_status exec_standalone(kvi_conn *c, struct kvi_redis_state *st,
                                  const struct kvi_redis_cmd *cmd, redisReply **out)
{
    uint32_t timeout_ms = kvi__redis_priv(c)->node_cfg.timeout_ms;
    int64_t deadline = kvi_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    int64_t backoff = BACKOFF_FIRST_MS;
    int sleeps = 0;

    for (int attempt = 0;; attempt++) {
        size_t cur = atomic_load(&st->current);
        int reused = 0, phase = KVI_REDIS_REFUSED;
        kvi_status s = KVI_E_CONNECT;
        /* The failover list: the host that worked last, then the others
         * (one marked down costs nothing). */
        for (size_t i = 0; i < st->nseeds; i++) {
            size_t idx = (cur + i) % st->nseeds;
            struct kvi_redis_node *n = st->seeds[idx];
            s = kvi__redis_node_call(c, n, cmd, 0, &reused, &phase, out);
            if (phase == KVI_REDIS_SENT) {
                if (idx != cur) {
                    atomic_store(&st->current, idx);
                    kvi_engine_log(c, KVI_LOG_WARN, "failed over to %s", n->addr.name);
                }
                break;
            }
            if (fatal(s))
                break;
        }
        if (s == KVI_OK) {
            /* A restarted server answers -LOADING until its data is read
             * back; the command did not run, so it may be sent again. */
            if (kvi__redis_is_error_kind(*out, "LOADING") && sleeps < MAX_SLEEPS &&
                kvi_monotonic_ms() + backoff <= deadline) {
                freeReplyObject(*out);
                *out = NULL;
                kvi_sleep_ms(backoff);
                sleeps++;
                backoff *= 2;
                attempt = -1;
                continue;
            }
            return KVI_OK;
        }
        if (!(phase == KVI_REDIS_SENT && reused && cmd->resend_ok && kvi__redis_retryable(s) &&
              attempt == 0))
            return s;
    }
}

/* Sentinel: the master the sentinels name.  A connection failure to it,
 * -READONLY (it was demoted) or -LOADING make the sentinels be asked
 * again, with backoff, until the call's timeout. */
static kvi_status exec_sentinel(kvi_conn *c, struct kvi_redis_state *st,
                                const struct kvi_redis_cmd *cmd, redisReply **out)
{
    uint32_t timeout_ms = kvi__redis_priv(c)->node_cfg.timeout_ms;
    int64_t deadline = kvi_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    int64_t backoff = BACKOFF_FIRST_MS;
    int resent = 0;
    redisReply *last_reply = NULL;
    kvi_status last = KVI_OK;

    for (;;) {
        struct kvi_redis_node *m = NULL;
        kvi_status s = kvi__redis_sentinel_master(c, st, kvi__redis_priv(c)->cfg.sentinel, &m);
        if (s != KVI_OK) {
            if (fatal(s)) {
                freeReplyObject(last_reply);
                return s;
            }
            last = s;
            goto backoff;
        }
        int reused = 0, phase = KVI_REDIS_REFUSED;
        redisReply *r = NULL;
        s = kvi__redis_node_call(c, m, cmd, 0, &reused, &phase, &r);
        if (s == KVI_OK) {
            if (kvi__redis_is_error_kind(r, "READONLY") || kvi__redis_is_error_kind(r, "LOADING")) {
                /* Not executed: a demoted or restarting master. */
                kvi__redis_sentinel_forget(st, m);
                freeReplyObject(last_reply);
                last_reply = r;
                last = KVI_OK;
                goto backoff;
            }
            freeReplyObject(last_reply);
            *out = r;
            return KVI_OK;
        }
        kvi__redis_sentinel_forget(st, m);
        if (fatal(s)) {
            freeReplyObject(last_reply);
            return s;
        }
        if (phase == KVI_REDIS_SENT) {
            /* The request may have run: sent again only when that cannot
             * change the outcome. */
            if (!(cmd->resend_ok && kvi__redis_retryable(s) && !resent)) {
                freeReplyObject(last_reply);
                return s;
            }
            resent = 1;
            continue;
        }
        last = s;
    backoff:
        if (kvi_monotonic_ms() + backoff > deadline)
            break;
        kvi_sleep_ms(backoff);
        backoff = backoff * 2 > 200 ? 200 : backoff * 2;
    }
    if (last_reply != NULL && last == KVI_OK) {
        kvi_status s = kvi__redis_reply_error(c, last_reply);
        freeReplyObject(last_reply);
        return s;
    }
    freeReplyObject(last_reply);
    return last != KVI_OK ? last : kvi_engine_error(c, KVI_E_INTERNAL, "sentinel: no outcome");
}

/* See dispatch.h. */
int kvi__redis_parse_redirect(const redisReply *r, const struct kvi_redis_node *from, int *slot,
                          char *host, size_t hostlen, uint16_t *port)
{
    const char *p = strchr(r->str, ' ');
    if (p == NULL)
        return -1;
    char *end;
    long sl = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end != ' ' || sl < 0 || sl >= KVI_REDIS_SLOTS)
        return -1;
    const char *addr = end + 1;
    const char *colon = strrchr(addr, ':');
    if (colon == NULL)
        return -1;
    long pt = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || pt <= 0 || pt > 65535)
        return -1;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
        addr++;
        hl -= 2;
    }
    if (hl == 0) {
        if (from->addr.host == NULL)
            return -1;
        snprintf(host, hostlen, "%s", from->addr.host);
    } else {
        if (hl >= hostlen)
            return -1;
        memcpy(host, addr, hl);
        host[hl] = '\0';
    }
    *slot = (int)sl;
    *port = (uint16_t)pt;
    return 0;
}

static kvi_status exec_cluster(kvi_conn *c, struct kvi_redis_state *st,
                               const struct kvi_redis_cmd *cmd, redisReply **out)
{
    uint32_t timeout_ms = kvi__redis_priv(c)->node_cfg.timeout_ms;
    int64_t deadline = kvi_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    struct kvi_redis_node *target = NULL;
    /* The one place where a command's key becomes its slot. */
    int slot = cmd->key != NULL ? (int)kvi__redis_key_slot(cmd->key, cmd->key_len) : -1;
    int asking = 0, sleeps = 0, resent = 0;
    int64_t backoff = BACKOFF_FIRST_MS;
    kvi_status last = KVI_OK;
    redisReply *last_reply = NULL;

    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        struct kvi_redis_node *n = target != NULL ? target : kvi__redis_slot_node(st, slot);
        int ask_now = asking;
        target = NULL;
        asking = 0;
        if (n == NULL) {
            kvi_status s = kvi__redis_refresh_map(c, st, 1);
            n = kvi__redis_slot_node(st, slot);
            if (n == NULL) {
                last = s != KVI_OK ? s
                                   : kvi_engine_error(c, KVI_E_BACKEND,
                                                      "no cluster node serves slot %d", slot);
                goto backoff;
            }
        }
        int reused, phase;
        redisReply *r = NULL;
        kvi_status s = kvi__redis_node_call(c, n, cmd, ask_now, &reused, &phase, &r);
        if (s != KVI_OK && phase == KVI_REDIS_REFUSED) {
            /* Marked down: fail at once, unless the map now names another
             * master for the slot (a replica took over). */
            kvi__redis_refresh_map(c, st, 0);
            if (slot >= 0 && kvi__redis_slot_node(st, slot) != n &&
                kvi__redis_slot_node(st, slot) != NULL)
                continue;
            freeReplyObject(last_reply);
            return s;
        }
        if (s != KVI_OK && phase != KVI_REDIS_SENT) {
            if (fatal(s)) {
                freeReplyObject(last_reply);
                return s;
            }
            /* The master may be gone and a replica about to take over. */
            last = s;
            kvi__redis_refresh_map(c, st, 0);
            goto backoff;
        }
        if (s != KVI_OK) {
            if (reused && cmd->resend_ok && kvi__redis_retryable(s) && !resent) {
                resent = 1;
                kvi__redis_refresh_map(c, st, 0);
                continue;
            }
            kvi__redis_refresh_map(c, st, 0);
            freeReplyObject(last_reply);
            return s;
        }
        if (kvi__redis_is_error_kind(r, "MOVED") || kvi__redis_is_error_kind(r, "ASK")) {
            int moved = r->str[0] == 'M', to_slot;
            char host[256];
            uint16_t port;
            if (kvi__redis_parse_redirect(r, n, &to_slot, host, sizeof host, &port) != 0) {
                s = kvi_engine_error(c, KVI_E_PROTOCOL, "bad redirection from %s: %.100s",
                                     n->addr.name, r->str);
                freeReplyObject(r);
                freeReplyObject(last_reply);
                return s;
            }
            freeReplyObject(r);
            target = kvi__redis_node_get(c, st, host, port);
            if (target == NULL) {
                freeReplyObject(last_reply);
                return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
            }
            if (moved) {
                kvi__redis_slot_moved(st, to_slot, target);
                kvi__redis_refresh_map(c, st, 0);
            } else {
                asking = 1;
            }
            continue;
        }
        if (kvi__redis_is_error_kind(r, "TRYAGAIN") || kvi__redis_is_error_kind(r, "CLUSTERDOWN") ||
            kvi__redis_is_error_kind(r, "LOADING")) {
            freeReplyObject(last_reply);
            last_reply = r;
            last = KVI_OK;
            if (kvi__redis_is_error_kind(r, "CLUSTERDOWN"))
                kvi__redis_refresh_map(c, st, 0);
            goto backoff;
        }
        freeReplyObject(last_reply);
        *out = r;
        return KVI_OK;

    backoff:
        if (sleeps >= MAX_SLEEPS || kvi_monotonic_ms() + backoff > deadline)
            break;
        kvi_sleep_ms(backoff);
        sleeps++;
        backoff *= 2;
    }
    if (last_reply != NULL && last == KVI_OK) {
        /* The server's last word (TRYAGAIN / CLUSTERDOWN), as an error. */
        kvi_status s = kvi__redis_reply_error(c, last_reply);
        freeReplyObject(last_reply);
        return s;
    }
    freeReplyObject(last_reply);
    if (last == KVI_OK)
        last = kvi_engine_error(c, KVI_E_BACKEND, "too many cluster redirections");
    return last;
}

static kvi_status current_state(kvi_conn *c, struct kvi_redis_state **st)
{
    kvi_status s = kvi__redis_state_get(c, st);
    if (s == KVI_OK)
        s = ensure_mode(c, *st);
    return s;
}

static int in_cluster(kvi_conn *c)
{
    return atomic_load(&kvi__redis_priv(c)->mode) == KVI_REDIS_MODE_CLUSTER;
}

/* See dispatch.h. */
kvi_status kvi__redis_exec(kvi_conn *c, const struct kvi_redis_cmd *cmd, redisReply **out)
{
    struct kvi_redis_state *st;
    kvi_status s = current_state(c, &st);

    if (s != KVI_OK)
        return s;
    if (in_cluster(c))
        return exec_cluster(c, st, cmd, out);
    if (kvi__redis_priv(c)->cfg.sentinel != NULL)
        return exec_sentinel(c, st, cmd, out);
    return exec_standalone(c, st, cmd, out);
}

/* See dispatch.h. */
kvi_status kvi__redis_is_cluster(kvi_conn *c, int *is_cluster)
{
    struct kvi_redis_state *st;
    kvi_status s = current_state(c, &st);

    if (s == KVI_OK)
        *is_cluster = in_cluster(c);
    return s;
}

/* PING on the standalone failover list: finds (and connects to) the
 * working host; a server error reply becomes a status. */
static kvi_status ping_standalone(kvi_conn *c, struct kvi_redis_state *st)
{
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    struct kvi_redis_cmd ping = {.argc = 1, .argv = argv, .lens = lens, .resend_ok = 1};
    redisReply *r = NULL;
    kvi_status s = kvi__redis_priv(c)->cfg.sentinel != NULL ? exec_sentinel(c, st, &ping, &r)
                                                            : exec_standalone(c, st, &ping, &r);
    if (s == KVI_OK && r->type == REDIS_REPLY_ERROR)
        s = kvi__redis_reply_error(c, r);
    freeReplyObject(r);
    return s;
}

/* See dispatch.h. */
kvi_status kvi__redis_masters(kvi_conn *c, struct kvi_redis_node ***nodes, size_t *count)
{
    struct kvi_redis_state *st;
    kvi_status s = current_state(c, &st);

    if (s != KVI_OK)
        return s;
    if (in_cluster(c))
        return kvi__redis_map_masters(c, st, nodes, count);
    s = ping_standalone(c, st);
    if (s != KVI_OK)
        return s;
    *nodes = kvi_engine_malloc(c, sizeof **nodes);
    if (*nodes == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    struct kvi_redis_node *m = st->seeds[atomic_load(&st->current)];
    if (kvi__redis_priv(c)->cfg.sentinel != NULL &&
        (s = kvi__redis_sentinel_master(c, st, kvi__redis_priv(c)->cfg.sentinel, &m)) != KVI_OK) {
        kvi_engine_free(c, *nodes);
        return s;
    }
    (*nodes)[0] = m;
    *count = 1;
    return KVI_OK;
}

/* See dispatch.h. */
kvi_status kvi__redis_net_open(kvi_conn *c)
{
    struct kvi_redis *r = kvi__redis_priv(c);
    struct kvi_redis_state *st = new_state(c);

    if (st == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    atomic_store(&r->state, st);
    atomic_store(&r->mode, KVI_REDIS_MODE_UNKNOWN);
    if (kvi_conn_lazy(c))
        return KVI_OK;
    kvi_status s = ensure_mode(c, st);
    /* Connect now (also checks the credentials and the database). */
    if (s == KVI_OK && !in_cluster(c))
        s = ping_standalone(c, st);
    return s;
}

/* See dispatch.h. */
void kvi__redis_net_close(kvi_conn *c)
{
    struct kvi_redis *r = kvi__redis_priv(c);
    struct kvi_redis_state *st = atomic_load(&r->state);
    /* This process's listener thread, if any (a parent's does not exist
     * here). */
    if (st != NULL && st->pid == getpid())
        kvi__redis_sentinel_watch_stop(c, st);
    kvi__redis_state_free(c, st);
    atomic_store(&r->state, NULL);
}

/* See dispatch.h. */
kvi_status kvi__redis_run(kvi_conn *c, int argc, const char **argv, const size_t *lens, int key_at,
                          int flags, redisReply **out)
{
    struct kvi_redis_cmd cmd = {.argc = argc,
                                .argv = argv,
                                .lens = lens,
                                .key = key_at > 0 && key_at < argc ? argv[key_at] : NULL,
                                .key_len = key_at > 0 && key_at < argc ? lens[key_at] : 0,
                                .resend_ok = (flags & KVI_REDIS_RESEND_OK) != 0,
                                .is_write = (flags & KVI_REDIS_WRITE) != 0,
                                .deep = (flags & KVI_REDIS_DEEP) != 0};
    return kvi__redis_exec(c, &cmd, out);
}
