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
static kvi_status ask(kvi_conn *c, struct why *w, struct kvi_redis_node *sn, const char *name,
                      char *host, size_t hostlen, uint16_t *port)
{
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", name};
    size_t lens[3] = {8, 23, strlen(name)};
    struct kvi_redis_cmd cmd = {.argc = 3, .argv = argv, .lens = lens, .resend_ok = 1};
    redisReply *r = NULL;

    kvi_status s = kvi__redis_exec_on(c, sn, &cmd, &r);
    if (s != KVI_OK)
        return s;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return fail(c, w, KVI_E_BACKEND,
                    "sentinel %s does not know a master named \"%s\" (check the sentinel option)",
                    sn->addr.name, name);
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

/* KVI_OK when node says ROLE master (of name, says sentinel from). */
static kvi_status check_role(kvi_conn *c, struct why *w, struct kvi_redis_node *n, const char *name,
                             const char *from)
{
    const char *argv[1] = {"ROLE"};
    size_t lens[1] = {4};
    struct kvi_redis_cmd cmd = {.argc = 1, .argv = argv, .lens = lens, .resend_ok = 1};
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
                 from, n->addr.name, name, role);
    }
    freeReplyObject(r);
    return s;
}

/* ---------------------------------------------------------------------- */
/* The +switch-master listener                                             */

struct kvi_redis_watch {
    kvi_conn *c;
    struct kvi_redis_state *st;
    const char *name; /* the master's name */
    pthread_t th;
    atomic_int stop;
};

/* "NAME oldip oldport newip newport": installs the new master of our
 * name. */
static void switch_master(struct kvi_redis_watch *w, const redisReply *msg, const char *from)
{
    char name[256], oldip[64], newip[64];
    unsigned oldport = 0, newport = 0;
    if (msg->type != REDIS_REPLY_STRING || msg->len >= 400 ||
        sscanf(msg->str, "%255s %63s %u %63s %u", name, oldip, &oldport, newip, &newport) != 5 ||
        strcmp(name, w->name) != 0 || newport == 0 || newport > 65535)
        return;
    struct kvi_redis_node *m = kvi__redis_node_get(w->c, w->st, newip, (uint16_t)newport);
    if (m == NULL)
        return;
    struct kvi_redis_node *old = atomic_exchange(&w->st->master, m);
    kvi_engine_log(w->c, KVI_LOG_INFO, "sentinel %s: +switch-master \"%s\": now %s%s", from,
                   w->name, m->addr.name, old == m ? " (already in use)" : "");
}

/* Listens on one sentinel until it fails or stop is set. */
static void listen_one(struct kvi_redis_watch *w, struct kvi_redis_node *sn)
{
    struct kvi_redis_conn conn;
    struct kvi_redis_conn_cfg cc;
    const char *argv[2] = {"SUBSCRIBE", "+switch-master"};
    size_t lens[2] = {9, 14};

    kvi__redis_conn_cfg(&sn->cfg, &sn->addr, &sn->tls_cache, KVI_REDIS_ROLE_SENTINEL, &cc);
    if (kvi__redis_conn_open(&conn, &cc, kvi__redis_deadline_after(sn->cfg.connect_timeout_ms)) !=
            KVI_OK ||
        kvi__redis_conn_append(&conn, 2, argv, lens) != 0) {
        kvi__redis_conn_close(&conn);
        return;
    }
    while (!atomic_load(&w->stop)) {
        redisReply *r = NULL;
        int got = kvi__redis_conn_flush(&conn);
        if (got > 0)
            got = kvi__redis_conn_read(&conn, 0, &r);
        if (got < 0)
            break;
        if (got == 0) {
            /* Short waits: stop is noticed within 200 ms. */
            if (kvi__redis_conn_wait(&conn, kvi_monotonic_ms() + 200) < 0)
                break;
            continue;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "message") == 0)
            switch_master(w, r->element[2], sn->addr.name);
        freeReplyObject(r);
    }
    kvi__redis_conn_close(&conn);
}

static void *watch_main(void *arg)
{
    struct kvi_redis_watch *w = arg;
    size_t i = atomic_load(&w->st->current);
    while (!atomic_load(&w->stop)) {
        listen_one(w, w->st->seeds[i % w->st->nseeds]);
        i++;
        for (int t = 0; t < 5 && !atomic_load(&w->stop); t++)
            kvi_sleep_ms(100);
    }
    return NULL;
}

/* Starts the listener once per state. */
static void watch_start(kvi_conn *c, struct kvi_redis_state *st, const char *name)
{
    if (atomic_load(&st->watch) != NULL)
        return;
    struct kvi_redis_watch *w = kvi_engine_malloc(c, sizeof *w);
    if (w == NULL)
        return;
    w->c = c;
    w->st = st;
    w->name = name;
    atomic_init(&w->stop, 0);
    struct kvi_redis_watch *none = NULL;
    if (!atomic_compare_exchange_strong(&st->watch, &none, w)) {
        kvi_engine_free(c, w);
        return;
    }
    if (pthread_create(&w->th, NULL, watch_main, w) != 0) {
        /* Failovers are then noticed at the first error only. */
        atomic_store(&st->watch, NULL);
        kvi_engine_free(c, w);
        kvi_engine_log(c, KVI_LOG_WARN, "sentinel: cannot start the +switch-master listener");
    }
}

/* See sentinel.h. */
void kvi__redis_sentinel_watch(kvi_conn *c, struct kvi_redis_state *st, const char *name)
{
    watch_start(c, st, name);
}

/* See sentinel.h. */
void kvi__redis_sentinel_watch_stop(kvi_conn *c, struct kvi_redis_state *st)
{
    struct kvi_redis_watch *w = atomic_exchange(&st->watch, NULL);
    if (w == NULL)
        return;
    atomic_store(&w->stop, 1);
    pthread_join(w->th, NULL);
    kvi_engine_free(c, w);
}

/* See sentinel.h. */
kvi_status kvi__redis_sentinel_master(kvi_conn *c, struct kvi_redis_state *st, const char *name,
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
        s = ask(c, &w, sn, name, host, sizeof host, &port);
        if (s == KVI_OK) {
            m = kvi__redis_node_get(c, st, host, port);
            if (m == NULL)
                return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
            s = check_role(c, &w, m, name, sn->addr.name);
            if (s == KVI_E_CONNECT || s == KVI_E_TIMEOUT || s == KVI_E_IO)
                fail(c, &w, s, "sentinel %s names %s as master of \"%s\", which cannot be reached",
                     sn->addr.name, m->addr.name, name);
        } else if (s == KVI_E_CONNECT || s == KVI_E_TIMEOUT || s == KVI_E_IO) {
            down++;
        }
        if (s == KVI_OK) {
            /* The one that answered is asked first next time. */
            atomic_store(&st->current, idx);
            struct kvi_redis_node *none = NULL;
            if (atomic_compare_exchange_strong(&st->master, &none, m))
                kvi_engine_log(c, KVI_LOG_INFO, "sentinel %s: master \"%s\" is %s", sn->addr.name,
                               name, m->addr.name);
            *out = atomic_load(&st->master);
            if (*out == NULL) /* forgotten meanwhile: ours is as good */
                *out = m;
            watch_start(c, st, name);
            return KVI_OK;
        }
        if (s == KVI_E_AUTH || s == KVI_E_NOMEM)
            return s;
    }
    if (down == st->nseeds || w.st == KVI_OK)
        return kvi_engine_error(c, s == KVI_E_TIMEOUT ? s : KVI_E_CONNECT,
                                "no sentinel answered for master \"%s\" (%zu tried, each within "
                                "connect_timeout)",
                                name, st->nseeds);
    return kvi_engine_error(c, w.st, "%s", w.msg);
}

/* See sentinel.h. */
void kvi__redis_sentinel_forget(struct kvi_redis_state *st, struct kvi_redis_node *m)
{
    atomic_compare_exchange_strong(&st->master, &m, NULL);
}
