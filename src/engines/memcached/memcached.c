/*
 * memcached.c -- the memcached engine (module kvi_memcached.so) on
 * libmemcached: a pool of servers sharded by consistent hashing (ketama),
 * binary protocol, optional SASL.  This file opens and closes connections
 * and holds the engine table; mc_engine.h lists the other files.
 */
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "mc_engine.h"

#define MC_DEFAULT_HOST "127.0.0.1"
#define MC_DEFAULT_PORT 11211
#define MC_MAX_RETRY_S 3600

/* The URL options (docs/engines/memcached.md), parsed by the core. */
struct mc_options {
    int64_t retry_s;
    kvi_breaker_options breaker; /* per server of the pool */
};

static const kvi_option mc_options[] = {
    {"retry_timeout", KVI_OPT_INT, "0", 0, MC_MAX_RETRY_S, NULL,
     offsetof(struct mc_options, retry_s),
     "seconds a failed server rests before it is tried again (0 = retry at once)"},
    KVI_BREAKER_OPTIONS(struct mc_options, breaker),
    KVI_OPTION_END,
};

static kvi_status mc_behave(kvi_conn *c, memcached_st *mc, memcached_behavior_t b, uint64_t v,
                            const char *what)
{
    memcached_return_t rc = memcached_behavior_set(mc, b, v);
    if (rc != MEMCACHED_SUCCESS)
        return kvi_engine_error(c, KVI_E_BACKEND, "cannot set %s: %s", what,
                                memcached_strerror(mc, rc));
    return KVI_OK;
}

/* Connects at open: succeeds when at least one server of the pool answers
 * (the keys of a server that is down fail with CONNECT until it is back),
 * logging a warning when some do not.  STAT needs SASL authentication on a
 * server that has it, so it also detects missing credentials. */
static kvi_status mc_probe(kvi_conn *c)
{
    struct mc_lease l;
    kvi_status st = kvi__mc_acquire(c, &l);
    if (st != KVI_OK)
        return st;
    uint32_t up;
    memcached_return_t rc = kvi__mc_stat_all(c, l.mc, &up, 1);
    if (rc == MEMCACHED_PROTOCOL_ERROR && up == 0) {
        /* libmemcached does not record a refused STAT (nor any reply it
         * cannot use); a key's existence check reports a refusal. */
        memcached_quit(l.mc);
        memcached_return_t rc2 = memcached_exist(l.mc, "kvi:probe", 9);
        if (rc2 == MEMCACHED_AUTH_FAILURE || rc2 == MEMCACHED_AUTH_PROBLEM)
            st = KVI_E_AUTH;
    }
    if (rc != MEMCACHED_SUCCESS && up == 0)
        st = kvi__mc_fail(c, l.mc, st == KVI_E_AUTH ? MEMCACHED_AUTH_FAILURE : rc, "connect");
    kvi__mc_release(c, &l, st);
    return st;
}

static kvi_status mc_open(kvi_conn *c, const kvi_url *url)
{
    struct mc_conn *m = kvi_conn_priv(c);
    if (url->database != NULL)
        return kvi_engine_error(c, KVI_E_BAD_URL,
                                "memcached has no databases: remove '/%s' from the URL",
                                url->database);
    if ((url->user != NULL) != (url->has_password != 0))
        return kvi_engine_error(c, KVI_E_INVALID,
                                "SASL authentication needs both a user name and a password");
    const struct mc_options *opt = kvi_conn_options(c);
    m->retry_s = (uint64_t)opt->retry_s;
    uint64_t retry_s = m->retry_s;

    m->master = memcached_create(NULL);
    if (m->master == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory creating a memcached handle");
    memcached_st *mc = m->master;
    uint64_t timeout_ms = kvi_conn_timeout_ms(c);
    uint32_t connect_ms = kvi_conn_connect_timeout_ms(c);
    m->call_ms = (uint32_t)(timeout_ms > connect_ms ? timeout_ms : connect_ms) + MC_WATCH_GRACE_MS;
    struct {
        memcached_behavior_t b;
        uint64_t v;
        const char *what;
    } behaviours[] = {
        {MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1, "binary protocol"},
        /* ketama with MD5 points, as other ketama clients place keys */
        {MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1, "ketama distribution"},
        {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY"},
        {MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1, "CAS"},
        {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, kvi_conn_connect_timeout_ms(c), "connect timeout"},
        {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, timeout_ms, "timeout"},
        {MEMCACHED_BEHAVIOR_SND_TIMEOUT, timeout_ms * 1000u, "send timeout"},
        {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, timeout_ms * 1000u, "receive timeout"},
        /* A failed server is retried after retry_timeout seconds and is
         * never ejected: ejection would move its keys to other servers and
         * split counters between two places. */
        {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, retry_s, "retry timeout"},
        {MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, retry_s, "dead timeout"},
        {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0, "failed-server removal"},
        {MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0, "auto-eject"},
    };
    for (size_t i = 0; i < sizeof behaviours / sizeof behaviours[0]; i++) {
        kvi_status st = mc_behave(c, mc, behaviours[i].b, behaviours[i].v, behaviours[i].what);
        if (st != KVI_OK)
            return st;
    }

    for (size_t i = 0; i < url->nhosts; i++) {
        const kvi_url_host *h = &url->hosts[i];
        memcached_return_t rc =
            memcached_server_add(mc, h->host, h->port ? h->port : MC_DEFAULT_PORT);
        if (rc != MEMCACHED_SUCCESS)
            return kvi_engine_error(c, KVI_E_BAD_URL, "cannot use server '%s': %s", h->host,
                                    memcached_strerror(mc, rc));
    }
    if (url->nhosts == 0) {
        memcached_return_t rc = memcached_server_add(mc, MC_DEFAULT_HOST, MC_DEFAULT_PORT);
        if (rc != MEMCACHED_SUCCESS)
            return kvi_engine_error(c, KVI_E_BACKEND, "cannot add the default server: %s",
                                    memcached_strerror(mc, rc));
    }
    if (url->user != NULL) {
        m->sasl_user = kvi_engine_strdup(c, url->user);
        m->sasl_pass = kvi_engine_strdup(c, url->password != NULL ? url->password : "");
        if (m->sasl_user == NULL || m->sasl_pass == NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        memcached_return_t rc = memcached_set_sasl_auth_data(mc, url->user, url->password);
        if (rc != MEMCACHED_SUCCESS)
            return kvi_engine_error(
                c, kvi__mc_map(rc) == KVI_E_UNSUPPORTED ? KVI_E_UNSUPPORTED : KVI_E_AUTH,
                "cannot set up SASL for user '%s': %s", url->user, memcached_strerror(mc, rc));
    }

    m->sha256 = kvi__mc_sha256_fetch(); /* NULL: the slower default */
    kvi_status st = kvi__mc_servers_init(c, m, &opt->breaker);
    if (st != KVI_OK)
        return st;

    struct mc_gen *g = kvi__mc_gen_new(c, getpid(), NULL);
    if (g == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    atomic_store_explicit(&m->gen, g, memory_order_release);

    if (!kvi_conn_lazy(c))
        return mc_probe(c);
    return KVI_OK;
}

static void mc_close(kvi_conn *c)
{
    struct mc_conn *m = kvi_conn_priv(c);
    pid_t pid = getpid();
    struct mc_gen *g = atomic_load_explicit(&m->gen, memory_order_acquire);
    while (g != NULL) {
        struct mc_gen *prev = g->prev;
        /* Handles of another pid hold the parent's sockets, and its
         * watchdog thread is not in this process: leave them. */
        if (g->pid == pid)
            kvi__mc_gen_free(c, g);
        else
            kvi_engine_free(c, g);
        g = prev;
    }
    atomic_store_explicit(&m->gen, NULL, memory_order_release);
    if (m->master != NULL)
        memcached_free(m->master);
    m->master = NULL;
    kvi__mc_servers_free(c, m);
    kvi_engine_free(c, m->sasl_user);
    m->sasl_user = NULL;
    if (m->sasl_pass != NULL) {
        volatile char *p = m->sasl_pass;
        while (*p != '\0')
            *p++ = '\0';
    }
    kvi_engine_free(c, m->sasl_pass);
    m->sasl_pass = NULL;
    kvi__mc_sha256_free(m->sha256);
    m->sha256 = NULL;
}

static const struct kvi_engine kvi_engine_memcached = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "memcached",
    .description = "memcached server pool (libmemcached, ketama, binary protocol)",
    .caps = KVI_CAP_TTL | KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS | KVI_CAP_BINARY |
            KVI_CAP_SHARED | KVI_CAP_CONDITIONAL,
    .conn_size = sizeof(struct mc_conn),
    .max_value_len = 0,
    .option_table = mc_options,
    .options_size = sizeof(struct mc_options),
    .open = mc_open,
    .close = mc_close,
    .store = kvi__mc_store,
    .fetch = kvi__mc_fetch,
    .remove = kvi__mc_remove,
    .add = kvi__mc_add,
    .add_bounded = kvi__mc_add_bounded,
    .store_nx = kvi__mc_store_nx,
    .counter_fetch = kvi__mc_counter_fetch,
    .ttl = kvi__mc_ttl,
    .ping = kvi__mc_ping,
    .stats = kvi__mc_stats,
    .batch = kvi__mc_batch,
    .async = &kvi__mc_async,
};

/* The macro defines this without a prototype; declared here to keep
 * -Wmissing-prototypes quiet. */
const struct kvi_engine *kvi_module_engine(void);
KVI_ENGINE_MODULE(kvi_engine_memcached)
