/*
 * sentinel.c -- the master through Redis Sentinel (see sentinel.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sentinel.h"

/* The text of the most telling failure so far (the status and message
 * returned when no sentinel leads to a master). */
struct why {
    kvi_status st;
    char msg[400];
};

/* Sets the detail message and, unless a connection failure, remembers it
 * in w.  Returns st. */
static kvi_status fail(kvi_conn *c, struct why *w, kvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static kvi_status fail(kvi_conn *c, struct why *w, kvi_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
    w->st = st;
    return kvi_engine_error(c, st, "%s", w->msg);
}

/* Asks one sentinel: KVI_OK with the master's host and port, else an
 * error status with the detail message set. */
static kvi_status ask(kvi_conn *c, struct why *w, struct kvi_redis_node *sn, char *host,
                      size_t hostlen, uint16_t *port)
{
    const struct kvi_redis_cfg *cfg = &kvi__redis_priv(c)->cfg;
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", cfg->sentinel};
    size_t lens[3] = {8, 23, strlen(cfg->sentinel)};
    struct kvi_redis_cmd cmd = {.argc = 3, .argv = argv, .lens = lens, .slot = -1, .resend_ok = 1};
    redisReply *r = NULL;

    kvi_status s = kvi__redis_exec_on(c, sn, &cmd, &r);
    if (s != KVI_OK)
        return s;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return fail(c, w, KVI_E_BACKEND,
                    "sentinel %s does not know a master named \"%s\" (check the sentinel option)",
                    sn->addr.name, cfg->sentinel);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len == 0 || r->element[0]->len >= hostlen) {
        if (r->type == REDIS_REPLY_ERROR) {
            s = fail(c, w, kvi__redis_is_auth_error(r) ? KVI_E_AUTH : KVI_E_BACKEND,
                     "sentinel %s: %.200s (sentinel_user, sentinel_password?)", sn->addr.name,
                     r->str);
            freeReplyObject(r);
            return s;
        }
        freeReplyObject(r);
        return fail(c, w, KVI_E_PROTOCOL,
                    "sentinel %s: unexpected reply to SENTINEL get-master-addr-by-name",
                    sn->addr.name);
    }
    char *end;
    long p = strtol(r->element[1]->str, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535) {
        freeReplyObject(r);
        return fail(c, w, KVI_E_PROTOCOL, "sentinel %s: bad master port", sn->addr.name);
    }
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    *port = (uint16_t)p;
    freeReplyObject(r);
    return KVI_OK;
}

/* KVI_OK when node says ROLE master. */
static kvi_status check_role(kvi_conn *c, struct why *w, struct kvi_redis_node *n,
                             const char *from)
{
    const char *argv[1] = {"ROLE"};
    size_t lens[1] = {4};
    struct kvi_redis_cmd cmd = {.argc = 1, .argv = argv, .lens = lens, .slot = -1, .resend_ok = 1};
    redisReply *r = NULL;

    kvi_status s = kvi__redis_exec_on(c, n, &cmd, &r);
    if (s != KVI_OK)
        return s;
    if (r->type == REDIS_REPLY_ERROR) {
        s = fail(c, w, kvi__redis_is_auth_error(r) ? KVI_E_AUTH : KVI_E_BACKEND,
                 "ROLE on %s (named master by sentinel %s): %.200s", n->addr.name, from, r->str);
        freeReplyObject(r);
        return s;
    }
    int master = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                 r->element[0]->type == REDIS_REPLY_STRING &&
                 strcmp(r->element[0]->str, "master") == 0;
    if (!master) {
        const char *role = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                                   r->element[0]->type == REDIS_REPLY_STRING
                               ? r->element[0]->str
                               : "?";
        s = fail(c, w, KVI_E_BACKEND,
                 "sentinel %s names %s as master of \"%s\", but it says it is a %.32s "
                 "(failover under way?)",
                 from, n->addr.name, kvi__redis_priv(c)->cfg.sentinel, role);
    }
    freeReplyObject(r);
    return s;
}

/* See sentinel.h. */
kvi_status kvi__redis_sentinel_master(kvi_conn *c, struct kvi_redis_state *st,
                                      struct kvi_redis_node **out)
{
    struct kvi_redis_node *m = atomic_load(&st->master);
    if (m != NULL) {
        *out = m;
        return KVI_OK;
    }
    size_t first = atomic_load(&st->current);
    kvi_status s = KVI_E_CONNECT;
    struct why w = {.st = KVI_OK};
    size_t down = 0;
    for (size_t i = 0; i < st->nseeds; i++) {
        size_t idx = (first + i) % st->nseeds;
        struct kvi_redis_node *sn = st->seeds[idx];
        char host[256];
        uint16_t port = 0;
        s = ask(c, &w, sn, host, sizeof host, &port);
        if (s == KVI_OK) {
            m = kvi__redis_node_get(c, st, host, port);
            if (m == NULL)
                return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
            s = check_role(c, &w, m, sn->addr.name);
            if (s == KVI_E_CONNECT || s == KVI_E_TIMEOUT || s == KVI_E_IO)
                fail(c, &w, s, "sentinel %s names %s as master of \"%s\", which cannot be reached",
                     sn->addr.name, m->addr.name, kvi__redis_priv(c)->cfg.sentinel);
        } else if (s == KVI_E_CONNECT || s == KVI_E_TIMEOUT || s == KVI_E_IO) {
            down++;
        }
        if (s == KVI_OK) {
            /* The one that answered is asked first next time. */
            atomic_store(&st->current, idx);
            struct kvi_redis_node *none = NULL;
            if (atomic_compare_exchange_strong(&st->master, &none, m))
                kvi_engine_log(c, KVI_LOG_INFO, "sentinel %s: master \"%s\" is %s",
                               sn->addr.name, kvi__redis_priv(c)->cfg.sentinel, m->addr.name);
            *out = atomic_load(&st->master);
            return KVI_OK;
        }
        if (s == KVI_E_AUTH || s == KVI_E_NOMEM)
            return s;
    }
    if (down == st->nseeds || w.st == KVI_OK)
        return kvi_engine_error(c, s == KVI_E_TIMEOUT ? s : KVI_E_CONNECT,
                                "no sentinel answered for master \"%s\" (%zu tried, each within "
                                "connect_timeout)",
                                kvi__redis_priv(c)->cfg.sentinel, st->nseeds);
    return kvi_engine_error(c, w.st, "%s", w.msg);
}

/* See sentinel.h. */
void kvi__redis_sentinel_forget(struct kvi_redis_state *st, struct kvi_redis_node *m)
{
    atomic_compare_exchange_strong(&st->master, &m, NULL);
}
