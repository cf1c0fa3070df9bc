/*
 * redis.c -- the redis engine of kvi: its URL options, open and close, and
 * the engine table whose slots the command files provide (values.c,
 * counter.c, raw.c, scan.c, batch.c), on top of dispatch.c's routing
 * (standalone, failover list, Sentinel or Redis Cluster).  The layers are
 * listed in priv.h.  Built as the module kvi_redis.so.  Documentation:
 * docs/engines/redis.md.
 */
#include <limits.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "counter.h"
#include "dispatch.h"
#include "nearcache.h"
#include "raw.h"
#include "scan.h"
#include "values.h"

#define DEFAULT_PORT 6379
#define MAX_MAX_IDLE 1024
#define MAX_WAIT_REPLICAS 64

/* The URL options (docs/engines/redis.md), parsed by the core. */
struct redis_options {
    int cluster; /* 1 yes, 0 no, -1 auto */
    char *socket;
    int64_t max_idle;
    int64_t wait_replicas;
    uint32_t wait_timeout_ms; /* 0: the timeout */
    kvi_breaker_options breaker;
    int tls;
    char *tls_ca, *tls_cert, *tls_key, *tls_sni;
    int tls_verify;
    char *sentinel, *sentinel_user, *sentinel_password;
    int64_t client_cache;
    uint64_t client_cache_max_value;
};

static const kvi_option redis_options[] = {
    {"cluster", KVI_OPT_BOOL, "auto", -1, 1, NULL, offsetof(struct redis_options, cluster),
     "talk to a Redis Cluster (auto: detect it)"},
    {"socket", KVI_OPT_PATH, NULL, 0, 0, NULL, offsetof(struct redis_options, socket),
     "unix socket path instead of a host list"},
    {"max_idle", KVI_OPT_INT, "16", 1, MAX_MAX_IDLE, NULL, offsetof(struct redis_options, max_idle),
     "idle connections kept per node"},
    {"wait_replicas", KVI_OPT_INT, "0", 0, MAX_WAIT_REPLICAS, NULL,
     offsetof(struct redis_options, wait_replicas),
     "after each write, WAIT for this many replicas (0 = no WAIT)"},
    {"wait_timeout", KVI_OPT_MS, NULL, 1, INT32_MAX, NULL,
     offsetof(struct redis_options, wait_timeout_ms), "time limit of that WAIT (default: timeout)"},
    KVI_BREAKER_OPTIONS(struct redis_options, breaker),
    {"tls", KVI_OPT_BOOL, "no", 0, 1, NULL, offsetof(struct redis_options, tls),
     "talk TLS to every server (seeds, cluster nodes learned later, sentinels)"},
    {"tls_ca", KVI_OPT_PATH, NULL, 0, 0, NULL, offsetof(struct redis_options, tls_ca),
     "CA certificates (PEM file or directory) to check servers against (default: the "
     "system's)"},
    {"tls_cert", KVI_OPT_PATH, NULL, 0, 0, NULL, offsetof(struct redis_options, tls_cert),
     "client certificate chain (PEM), for servers with tls-auth-clients yes"},
    {"tls_key", KVI_OPT_PATH, NULL, 0, 0, NULL, offsetof(struct redis_options, tls_key),
     "private key of tls_cert (PEM; default: in tls_cert's file)"},
    {"tls_sni", KVI_OPT_STRING, NULL, 0, 0, NULL, offsetof(struct redis_options, tls_sni),
     "server name sent and checked (default: the host when it is a name)"},
    {"tls_verify", KVI_OPT_BOOL, "yes", 0, 1, NULL, offsetof(struct redis_options, tls_verify),
     "check the server's chain and its name or address"},
    {"sentinel", KVI_OPT_STRING, NULL, 0, 0, NULL, offsetof(struct redis_options, sentinel),
     "the hosts are sentinels; they name the master of this name"},
    {"sentinel_user", KVI_OPT_STRING, NULL, 0, 0, NULL,
     offsetof(struct redis_options, sentinel_user), "ACL user of the sentinels (AUTH)"},
    {"sentinel_password", KVI_OPT_STRING, NULL, 0, 0, NULL,
     offsetof(struct redis_options, sentinel_password),
     "password of the sentinels (the URL's userinfo is the data nodes')"},
    {"client_cache", KVI_OPT_INT, "0", 0, KVI_REDIS_NC_MAX_ENTRIES, NULL,
     offsetof(struct redis_options, client_cache),
     "near cache: fetched values kept per process, served without a round trip and "
     "invalidated by the server (CLIENT TRACKING); 0 = off"},
    {"client_cache_max_value", KVI_OPT_SIZE, "64k", 0, KVI_MAX_VALUE_LEN, NULL,
     offsetof(struct redis_options, client_cache_max_value),
     "longest value the near cache keeps"},
    KVI_OPTION_END,
};

static struct kvi_redis *rpriv(kvi_conn *c)
{
    return kvi__redis_priv(c);
}

/* ---------------------------------------------------------------------- */
/* open / close                                                            */

/* Whole decimal in lo..hi, else -1. */
static long parse_range(const char *v, long lo, long hi)
{
    char *end;
    if (v == NULL || v[0] < '0' || v[0] > '9')
        return -1;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < lo || n > hi)
        return -1;
    return n;
}

/* The TLS settings of the URL, when tls=yes. */
static kvi_status open_tls(kvi_conn *c, const struct redis_options *opt)
{
    struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    const char *lone = opt->tls_ca     ? "tls_ca"
                       : opt->tls_cert ? "tls_cert"
                       : opt->tls_key  ? "tls_key"
                       : opt->tls_sni  ? "tls_sni"
                                       : NULL;
    if (!opt->tls) {
        if (lone != NULL)
            return kvi_engine_error(c, KVI_E_INVALID, "option %s needs tls=yes", lone);
        return KVI_OK;
    }
    if (opt->tls_key != NULL && opt->tls_cert == NULL)
        return kvi_engine_error(c, KVI_E_INVALID, "option tls_key needs tls_cert");
    struct kvi_redis_tls_opts o = {
        .ca = opt->tls_ca,
        .cert = opt->tls_cert,
        .key = opt->tls_key,
        .sni = opt->tls_sni != NULL && opt->tls_sni[0] != '\0' ? opt->tls_sni : NULL,
        .verify = opt->tls_verify,
    };
    char err[320];
    kvi_status s = kvi__redis_tls_new(&o, &cfg->tls, err, sizeof err);
    if (s != KVI_OK)
        return kvi_engine_error(c, s, "%s", err);
    return KVI_OK;
}

/* sentinel=NAME and the sentinels' credentials. */
static kvi_status open_sentinel(kvi_conn *c, const struct redis_options *opt, const kvi_url *url)
{
    struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    if (opt->sentinel == NULL || opt->sentinel[0] == '\0') {
        if (opt->sentinel_user != NULL || opt->sentinel_password != NULL)
            return kvi_engine_error(c, KVI_E_INVALID,
                                    "options sentinel_user and sentinel_password need sentinel=NAME");
        return KVI_OK;
    }
    if (opt->cluster > 0 || opt->socket != NULL || url->nhosts == 0 ||
        url->hosts[0].host[0] == '/')
        return kvi_engine_error(c, KVI_E_INVALID,
                                "option sentinel needs a host list of sentinels (no cluster=yes, "
                                "no socket)");
    if ((cfg->sentinel = kvi_engine_strdup(c, opt->sentinel)) == NULL ||
        (opt->sentinel_user != NULL &&
         (cfg->sentinel_user = kvi_engine_strdup(c, opt->sentinel_user)) == NULL))
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    if (opt->sentinel_password != NULL || opt->sentinel_user != NULL) {
        const char *pw = opt->sentinel_password != NULL ? opt->sentinel_password : "";
        if ((cfg->sentinel_password = kvi_engine_strdup(c, pw)) == NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    return KVI_OK;
}

static kvi_status redis_open(kvi_conn *c, const kvi_url *url)
{
    struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    struct kvi_redis_node_cfg *nc = &rpriv(c)->node_cfg;
    const struct redis_options *opt = kvi_conn_options(c);

    nc->connect_timeout_ms = kvi_conn_connect_timeout_ms(c);
    nc->timeout_ms = kvi_conn_timeout_ms(c);
    cfg->cluster = opt->cluster < 0   ? KVI_REDIS_CLUSTER_AUTO
                   : opt->cluster > 0 ? KVI_REDIS_CLUSTER_YES
                                      : KVI_REDIS_CLUSTER_NO;
    nc->max_idle = (size_t)opt->max_idle;
    nc->breaker = opt->breaker;
    nc->wait_replicas = (unsigned)opt->wait_replicas;
    nc->wait_timeout_ms = opt->wait_timeout_ms != 0 ? opt->wait_timeout_ms : nc->timeout_ms;
    cfg->client_cache = (size_t)opt->client_cache;
    cfg->client_cache_max_value = (size_t)opt->client_cache_max_value;
    if (cfg->client_cache > 0 && cfg->cluster == KVI_REDIS_CLUSTER_YES)
        return kvi_engine_error(c, KVI_E_INVALID,
                                "option client_cache: the near cache works with a standalone "
                                "server, a failover list or Sentinel, not with a Redis Cluster");
    kvi_status ts = open_tls(c, opt);
    if (ts != KVI_OK)
        return ts;
    if ((ts = open_sentinel(c, opt, url)) != KVI_OK)
        return ts;
    if (opt->socket != NULL) {
        if (url->nhosts > 0)
            return kvi_engine_error(c, KVI_E_INVALID,
                                    "option socket and a host list exclude each other");
        if (cfg->cluster == KVI_REDIS_CLUSTER_YES)
            return kvi_engine_error(c, KVI_E_INVALID,
                                    "option socket: a cluster is reached over TCP");
        if ((cfg->socket = kvi_engine_strdup(c, opt->socket)) == NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    /* A unix socket path as the host, as docs/urls.md shows it:
     * "redis://%2Frun%2Fredis.sock/0" is "socket=/run/redis.sock". */
    int socket_host = url->nhosts > 0 && url->hosts[0].host[0] == '/';
    for (size_t i = 0; i < url->nhosts; i++) {
        if (url->hosts[i].host[0] != '/')
            continue;
        if (url->nhosts > 1 || opt->socket != NULL)
            return kvi_engine_error(c, KVI_E_INVALID,
                                    "a unix socket path as host excludes other hosts and the "
                                    "socket option");
        if (url->hosts[i].port != 0)
            return kvi_engine_error(c, KVI_E_INVALID, "a unix socket path as host takes no port");
        if (cfg->cluster == KVI_REDIS_CLUSTER_YES)
            return kvi_engine_error(c, KVI_E_INVALID,
                                    "a unix socket path as host: a cluster is reached over TCP");
        if ((cfg->socket = kvi_engine_strdup(c, url->hosts[i].host)) == NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    if (url->database != NULL) {
        nc->db = parse_range(url->database, 0, INT_MAX);
        if (nc->db < 0)
            return kvi_engine_error(c, KVI_E_BAD_URL, "database must be a number 0..%d, got \"%s\"",
                                    INT_MAX, url->database);
        if (nc->db > 0 && cfg->cluster == KVI_REDIS_CLUSTER_YES)
            return kvi_engine_error(c, KVI_E_INVALID, "a cluster has only database 0");
    }
    if (url->user != NULL && (cfg->user = kvi_engine_strdup(c, url->user)) == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    /* "user@" alone authenticates as that user (a nopass ACL user). */
    if ((url->password != NULL && url->password[0] != '\0') || url->user != NULL) {
        if ((cfg->password = kvi_engine_strdup(c, url->password != NULL ? url->password : "")) ==
            NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    size_t nhosts = url->nhosts > 0 && !socket_host ? url->nhosts : (cfg->socket != NULL ? 0 : 1);
    if (nhosts > 0) {
        cfg->hosts = kvi_engine_malloc(c, nhosts * sizeof *cfg->hosts);
        if (cfg->hosts == NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        memset(cfg->hosts, 0, nhosts * sizeof *cfg->hosts);
        for (size_t i = 0; i < nhosts; i++) {
            const char *h = url->nhosts > 0 ? url->hosts[i].host : "127.0.0.1";
            uint16_t port = url->nhosts > 0 ? url->hosts[i].port : 0;
            /* (a socket host never gets here: nhosts is 0 then) */
            cfg->hosts[i].port = port != 0 ? port : DEFAULT_PORT;
            if ((cfg->hosts[i].host = kvi_engine_strdup(c, h)) == NULL)
                return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
            cfg->nhosts = i + 1;
        }
    }
    /* Host names are resolved here, once, at definition (an IP address is
     * only parsed); every connect and reconnect uses these addresses.  A
     * name that does not resolve now is looked up again in the background
     * (resolve.h, docs/engines/redis.md "Host names"). */
    if ((rpriv(c)->names = kvi__redis_names_new()) == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    for (size_t i = 0; i < cfg->nhosts; i++) {
        char why[160];
        if (kvi__redis_names_resolve_now(rpriv(c)->names, cfg->hosts[i].host, why, sizeof why) ==
            NULL)
            kvi_engine_log(c, KVI_LOG_WARN, "%s (looked up again in the background)", why);
    }
    kvi__redis_scripts_init(&rpriv(c)->scripts);
    /* The node settings point to what cfg owns. */
    nc->user = cfg->user;
    nc->password = cfg->password;
    nc->sentinel_user = cfg->sentinel_user;
    nc->sentinel_password = cfg->sentinel_password;
    nc->tls = cfg->tls;
    nc->scripts = &rpriv(c)->scripts;
    nc->names = rpriv(c)->names;
    return kvi__redis_net_open(c);
}

static void redis_close(kvi_conn *c)
{
    struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;

    kvi__redis_nc_close(c);
    kvi__redis_net_close(c);
    kvi__redis_names_free(rpriv(c)->names);
    rpriv(c)->names = NULL;
    kvi_engine_free(c, cfg->user);
    if (cfg->password != NULL) {
        /* Do not leave the secret in freed memory. */
        volatile char *p = cfg->password;
        while (*p != '\0')
            *p++ = '\0';
    }
    kvi_engine_free(c, cfg->password);
    if (cfg->sentinel_password != NULL) {
        volatile char *p = cfg->sentinel_password;
        while (*p != '\0')
            *p++ = '\0';
    }
    kvi_engine_free(c, cfg->sentinel_password);
    kvi_engine_free(c, cfg->sentinel_user);
    kvi_engine_free(c, cfg->sentinel);
    kvi_engine_free(c, cfg->socket);
    for (size_t i = 0; i < cfg->nhosts; i++)
        kvi_engine_free(c, cfg->hosts[i].host);
    kvi_engine_free(c, cfg->hosts);
    kvi__redis_tls_free(cfg->tls);
    memset(cfg, 0, sizeof *cfg);
    memset(&rpriv(c)->node_cfg, 0, sizeof rpriv(c)->node_cfg);
}

static const struct kvi_engine kvi_engine_redis = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "redis",
    .description = "Redis (standalone, failover list or Redis Cluster; TLS)",
    .caps = KVI_CAP_TTL | KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS | KVI_CAP_BINARY |
            KVI_CAP_ITERATE | KVI_CAP_RAW_QUERY | KVI_CAP_PERSISTENT | KVI_CAP_SHARED |
            KVI_CAP_CONDITIONAL,
    .conn_size = sizeof(struct kvi_redis),
    .max_value_len = KVI_MAX_VALUE_LEN,
    .option_table = redis_options,
    .options_size = sizeof(struct redis_options),
    .open = redis_open,
    .close = redis_close,
    .store = kvi__redis_store,
    .fetch = kvi__redis_fetch,
    .remove = kvi__redis_remove,
    .add = kvi__redis_add,
    .counter_fetch = kvi__redis_counter_fetch,
    .raw_query = kvi__redis_raw_query,
    .keys = kvi__redis_keys,
    .remove_chunk = kvi__redis_remove_chunk,
    .ttl = kvi__redis_ttl,
    .add_bounded = kvi__redis_add_bounded,
    .store_nx = kvi__redis_store_nx,
    .ping = kvi__redis_ping,
    .stats = kvi__redis_nc_stats,
    .batch = kvi__redis_batch,
    .async = &kvi__redis_async,
};

/* KVI_ENGINE_MODULE defines this function; its prototype keeps
 * -Wmissing-prototypes quiet. */
const struct kvi_engine *kvi_module_engine(void);
KVI_ENGINE_MODULE(kvi_engine_redis)

