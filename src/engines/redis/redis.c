/*
 * redis.c -- the redis engine of kvi: URL options and the operations, on
 * top of dispatch.c's routing (standalone, failover list or Redis Cluster);
 * counters live in counter.c, their Lua scripts in scripts.c.
 * Built as the module kvi_redis.so.  Documentation: docs/engines/redis.md.
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
#include "error.h"
#include "nearcache.h"
#include "route.h"

#define DEFAULT_PORT 6379
#define MAX_MAX_IDLE 1024
#define MAX_WAIT_REPLICAS 64
/* Keys asked for per SCAN step. */
#define SCAN_COUNT "1000"

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
    const struct redis_options *opt = kvi_conn_options(c);

    cfg->connect_timeout_ms = kvi_conn_connect_timeout_ms(c);
    cfg->timeout_ms = kvi_conn_timeout_ms(c);
    cfg->cluster = opt->cluster < 0   ? KVI_REDIS_CLUSTER_AUTO
                   : opt->cluster > 0 ? KVI_REDIS_CLUSTER_YES
                                      : KVI_REDIS_CLUSTER_NO;
    cfg->max_idle = (size_t)opt->max_idle;
    cfg->breaker = opt->breaker;
    cfg->wait_replicas = (unsigned)opt->wait_replicas;
    cfg->wait_timeout_ms = opt->wait_timeout_ms != 0 ? opt->wait_timeout_ms : cfg->timeout_ms;
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
        cfg->db = parse_range(url->database, 0, INT_MAX);
        if (cfg->db < 0)
            return kvi_engine_error(c, KVI_E_BAD_URL, "database must be a number 0..%d, got \"%s\"",
                                    INT_MAX, url->database);
        if (cfg->db > 0 && cfg->cluster == KVI_REDIS_CLUSTER_YES)
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
    kvi__redis_scripts_init(&rpriv(c)->scripts);
    rpriv(c)->node_cfg = (struct kvi_redis_node_cfg){
        .user = cfg->user,
        .password = cfg->password,
        .db = cfg->db,
        .sentinel_user = cfg->sentinel_user,
        .sentinel_password = cfg->sentinel_password,
        .tls = cfg->tls,
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .timeout_ms = cfg->timeout_ms,
        .max_idle = cfg->max_idle,
        .wait_replicas = cfg->wait_replicas,
        .wait_timeout_ms = cfg->wait_timeout_ms,
        .breaker = cfg->breaker,
        .scripts = &rpriv(c)->scripts,
    };
    return kvi__redis_net_open(c);
}

static void redis_close(kvi_conn *c)
{
    struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;

    kvi__redis_net_close(c);
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
}

/* ---------------------------------------------------------------------- */
/* Operations                                                              */

static kvi_status redis_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                              size_t val_len, int64_t expire_s)
{
    char ex[24];
    const char *argv[5] = {"SET", key, val, "EX", ex};
    size_t lens[5] = {3, key_len, val_len, 2, 0};
    redisReply *r;

    /* Without EX, SET also removes an earlier TTL. */
    if (expire_s > 0)
        lens[4] = kvi_format_int64(expire_s, ex);
    kvi_status s =
        kvi__redis_run(c, expire_s > 0 ? 5 : 3, argv, lens, 1, KVI_REDIS_RESEND_OK | KVI_REDIS_WRITE,
                       &r);
    kvi__redis_nc_drop(c, key, key_len);
    if (s != KVI_OK)
        return s;
    if (r->type != REDIS_REPLY_STATUS)
        return kvi__redis_unexpected(c, r, "SET");
    freeReplyObject(r);
    return KVI_OK;
}

/* SET key val NX [EX expire_s]: nil means the key exists.  Not resent: a
 * second SET after a lost reply would report KEY_EXISTS for our own
 * write. */
static kvi_status redis_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                                 size_t val_len, int64_t expire_s)
{
    char ex[24];
    const char *argv[6] = {"SET", key, val, "NX", "EX", ex};
    size_t lens[6] = {3, key_len, val_len, 2, 2, 0};
    redisReply *r;

    if (expire_s > 0)
        lens[5] = kvi_format_int64(expire_s, ex);
    kvi_status s = kvi__redis_run(c, expire_s > 0 ? 6 : 4, argv, lens, 1, KVI_REDIS_WRITE, &r);
    kvi__redis_nc_drop(c, key, key_len);
    if (s != KVI_OK)
        return s;
    if (r->type == REDIS_REPLY_NIL)
        s = KVI_KEY_EXISTS;
    else if (r->type != REDIS_REPLY_STATUS)
        return kvi__redis_unexpected(c, r, "SET NX");
    freeReplyObject(r);
    return s;
}

static kvi_status redis_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    redisReply *r;
    kvi_status s;
    if (kvi__redis_nc_fetch(c, key, key_len, out, &s))
        return s;
    s = kvi__redis_get_string(c, key, key_len, &r, NULL);
    if (s != KVI_OK)
        return s;
    s = kvi_value_set(c, out, r->str, r->len);
    freeReplyObject(r);
    return s;
}

/* kvi__redis_run_key() of a command that answers an integer: KVI_OK with
 * it in *v. */
static kvi_status run_key_integer(kvi_conn *c, const char *cmd, const void *key, size_t key_len,
                                  int flags, long long *v)
{
    redisReply *r;
    kvi_status s = kvi__redis_run_key(c, cmd, key, key_len, flags, &r);
    if (s != KVI_OK)
        return s;
    if (r->type != REDIS_REPLY_INTEGER)
        return kvi__redis_unexpected(c, r, cmd);
    *v = r->integer;
    freeReplyObject(r);
    return KVI_OK;
}

static kvi_status redis_remove(kvi_conn *c, const void *key, size_t key_len)
{
    long long n = 0;
    /* Not resent: a second DEL would report NOT_FOUND for a removed key. */
    kvi_status s = run_key_integer(c, "DEL", key, key_len, KVI_REDIS_WRITE, &n);
    kvi__redis_nc_drop(c, key, key_len);
    if (s != KVI_OK)
        return s;
    return n > 0 ? KVI_OK : KVI_NOT_FOUND;
}

static kvi_status redis_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
{
    long long ms = 0;
    kvi_status s = run_key_integer(c, "PTTL", key, key_len, KVI_REDIS_RESEND_OK, &ms);
    if (s != KVI_OK)
        return s;
    if (ms == -2)
        return KVI_NOT_FOUND;
    /* Rounded down: whole seconds the key is sure to live, never more
     * than it has (docs/semantics.md). */
    *ttl_s = ms < 0 ? -1 : (int64_t)(ms / 1000);
    return KVI_OK;
}

static kvi_status redis_ping(kvi_conn *c)
{
    struct kvi_redis_node **nodes = NULL;
    size_t count = 0;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    struct kvi_redis_cmd cmd = {
        .argc = 1, .argv = argv, .lens = lens, .resend_ok = 1};

    /* Every master must answer. */
    kvi_status s = kvi__redis_masters(c, &nodes, &count);
    for (size_t i = 0; s == KVI_OK && i < count; i++) {
        redisReply *r;
        s = kvi__redis_exec_on(c, nodes[i], &cmd, &r);
        if (s == KVI_OK && r->type != REDIS_REPLY_STATUS)
            s = kvi__redis_unexpected(c, r, "PING");
        else if (s == KVI_OK)
            freeReplyObject(r);
    }
    kvi_engine_free(c, nodes);
    return s;
}

/* ---------------------------------------------------------------------- */
/* Raw queries                                                             */

static kvi_reply *convert(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
        return kvi_reply_new_string(KVI_REPLY_STRING, r->str, r->len);
    case REDIS_REPLY_STATUS:
        return kvi_reply_new_string(KVI_REPLY_STATUS, r->str, r->len);
    case REDIS_REPLY_ERROR:
        return kvi_reply_new_string(KVI_REPLY_ERROR, r->str, r->len);
    case REDIS_REPLY_INTEGER:
        return kvi_reply_new_integer(r->integer);
    case REDIS_REPLY_ARRAY: {
        kvi_reply *a = kvi_reply_new_array(r->elements);
        for (size_t i = 0; a != NULL && i < r->elements; i++) {
            kvi_reply *e = convert(r->element[i]);
            if (e == NULL || kvi_reply_append(a, e) != KVI_OK) {
                kvi_reply_free(e);
                kvi_reply_free(a);
                a = NULL;
            }
        }
        return a;
    }
    default:
        return kvi_reply_new_nil();
    }
}

/* The first key of cmd's command line (in a cluster) into cmd->key, left
 * NULL for a command without keys.  A key the server named (COMMAND
 * GETKEYS) lives in *hold: free it after cmd has run. */
static kvi_status raw_key(kvi_conn *c, struct kvi_redis_cmd *cmd, char **words, redisReply **hold)
{
    int argc = cmd->argc;
    const size_t *lens = cmd->lens;
    int pos = kvi__redis_first_key((size_t)argc, words, lens);

    if (pos > 0) {
        cmd->key = words[pos];
        cmd->key_len = lens[pos];
        return KVI_OK;
    }
    if (pos == KVI_REDIS_NO_KEY)
        return KVI_OK;
    /* Unknown to our table: the server knows where the keys are. */
    const char **argv = kvi_engine_malloc(c, ((size_t)argc + 2) * sizeof *argv);
    size_t *alens = kvi_engine_malloc(c, ((size_t)argc + 2) * sizeof *alens);
    if (argv == NULL || alens == NULL) {
        kvi_engine_free(c, argv);
        kvi_engine_free(c, alens);
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    argv[0] = "COMMAND";
    alens[0] = 7;
    argv[1] = "GETKEYS";
    alens[1] = 7;
    for (int i = 0; i < argc; i++) {
        argv[i + 2] = words[i];
        alens[i + 2] = lens[i];
    }
    redisReply *r = NULL;
    kvi_status s = kvi__redis_run(c, argc + 2, argv, alens, 0, KVI_REDIS_RESEND_OK, &r);
    kvi_engine_free(c, argv);
    kvi_engine_free(c, alens);
    if (s != KVI_OK)
        return s;
    /* An error ("no key arguments", unknown command) leaves no key: the
     * command then gets its own error from any node. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        cmd->key = r->element[0]->str;
        cmd->key_len = r->element[0]->len;
        *hold = r;
    } else {
        freeReplyObject(r);
    }
    return KVI_OK;
}

static kvi_status redis_raw_query(kvi_conn *c, const char *query, size_t query_len, kvi_reply **out)
{
    char **words;
    size_t *lens, count;
    int is_cluster = 0;
    redisReply *hold = NULL;

    kvi_status s = kvi_split_words(c, query, query_len, &words, &lens, &count);
    if (s != KVI_OK)
        return s;
    if (count == 0 || count > INT_MAX) {
        s = kvi_engine_error(c, KVI_E_INVALID, "raw query: no command");
    } else if (kvi__redis_stateful_command(count, words, lens)) {
        s = kvi_engine_error(c, KVI_E_INVALID,
                             "raw query: %.*s changes the connection's state, which pooled "
                             "connections cannot keep",
                             (int)(lens[0] > 32 ? 32 : lens[0]), words[0]);
    } else {
        s = kvi__redis_is_cluster(c, &is_cluster);
    }
    /* A raw reply is read at any depth; never resent (it may write). */
    struct kvi_redis_cmd cmd = {
        .argc = (int)count, .argv = (const char **)words, .lens = lens, .deep = 1};
    if (s == KVI_OK && is_cluster)
        s = raw_key(c, &cmd, words, &hold);
    if (s == KVI_OK) {
        redisReply *r = NULL;
        s = kvi__redis_exec(c, &cmd, &r);
        if (s == KVI_OK) {
            *out = convert(r);
            freeReplyObject(r);
            if (*out == NULL)
                s = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        }
    }
    freeReplyObject(hold);
    kvi_words_free(words, lens, count);
    /* A raw query may write any key. */
    kvi__redis_nc_drop_all(c);
    return s;
}

/* ---------------------------------------------------------------------- */
/* Keys by glob                                                            */

/* A set of keys without duplicates (SCAN may return a key twice). */
struct keyset {
    char **keys;
    size_t *lens;
    size_t n, cap;
    size_t *table; /* index + 1, 0 = empty */
    size_t tcap;
};

static uint64_t hash_bytes(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void keyset_free(kvi_conn *c, struct keyset *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        kvi_engine_free(c, ks->keys[i]);
    kvi_engine_free(c, ks->keys);
    kvi_engine_free(c, ks->lens);
    kvi_engine_free(c, ks->table);
    memset(ks, 0, sizeof *ks);
}

static int keyset_grow(kvi_conn *c, struct keyset *ks)
{
    size_t ncap = ks->cap == 0 ? 64 : ks->cap * 2;
    char **nk = kvi_engine_realloc(c, ks->keys, ncap * sizeof *nk);
    if (nk == NULL)
        return -1;
    ks->keys = nk;
    size_t *nl = kvi_engine_realloc(c, ks->lens, ncap * sizeof *nl);
    if (nl == NULL)
        return -1;
    ks->lens = nl;
    ks->cap = ncap;
    size_t tcap = ncap * 2;
    size_t *table = kvi_engine_malloc(c, tcap * sizeof *table);
    if (table == NULL)
        return -1;
    memset(table, 0, tcap * sizeof *table);
    for (size_t i = 0; i < ks->n; i++) {
        size_t h = (size_t)hash_bytes(ks->keys[i], ks->lens[i]) & (tcap - 1);
        while (table[h] != 0)
            h = (h + 1) & (tcap - 1);
        table[h] = i + 1;
    }
    kvi_engine_free(c, ks->table);
    ks->table = table;
    ks->tcap = tcap;
    return 0;
}

/* Adds a copy of key unless present.  -1 when out of memory. */
static int keyset_add(kvi_conn *c, struct keyset *ks, const char *key, size_t len)
{
    if (ks->n == ks->cap && keyset_grow(c, ks) != 0)
        return -1;
    size_t h = (size_t)hash_bytes(key, len) & (ks->tcap - 1);
    while (ks->table[h] != 0) {
        size_t i = ks->table[h] - 1;
        if (ks->lens[i] == len && memcmp(ks->keys[i], key, len) == 0)
            return 0;
        h = (h + 1) & (ks->tcap - 1);
    }
    char *copy = kvi_engine_malloc(c, len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, key, len);
    copy[len] = '\0';
    ks->keys[ks->n] = copy;
    ks->lens[ks->n] = len;
    ks->table[h] = ++ks->n;
    return 0;
}

/* Calls page_fn with the keys matching glob of each SCAN page of every
 * master. */
typedef kvi_status (*page_fn)(kvi_conn *c, struct kvi_redis_node *node, int is_cluster,
                              const redisReply *keys, const char *glob, size_t glob_len, void *ud);

static kvi_status scan_all(kvi_conn *c, const char *glob, size_t glob_len, page_fn fn, void *ud)
{
    struct kvi_redis_node **nodes = NULL;
    size_t count = 0;
    int is_cluster = 0;
    char *pattern = kvi_engine_malloc(c, 2 * glob_len + 1);

    if (pattern == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    size_t plen = kvi__redis_glob_pattern(glob, glob_len, pattern);
    kvi_status s = kvi__redis_is_cluster(c, &is_cluster);
    if (s == KVI_OK)
        s = kvi__redis_masters(c, &nodes, &count);
    for (size_t i = 0; s == KVI_OK && i < count; i++) {
        char cursor[32] = "0";
        do {
            const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT};
            size_t lens[6] = {4, strlen(cursor), 5, plen, 5, strlen(SCAN_COUNT)};
            struct kvi_redis_cmd cmd = {
                .argc = 6, .argv = argv, .lens = lens, .resend_ok = 1};
            redisReply *r = NULL;
            s = kvi__redis_exec_on(c, nodes[i], &cmd, &r);
            if (s != KVI_OK)
                break;
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
                r->element[1]->type != REDIS_REPLY_ARRAY) {
                s = kvi__redis_unexpected(c, r, "SCAN");
                break;
            }
            memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
            s = fn(c, nodes[i], is_cluster, r->element[1], glob, glob_len, ud);
            freeReplyObject(r);
        } while (s == KVI_OK && strcmp(cursor, "0") != 0);
    }
    kvi_engine_free(c, nodes);
    kvi_engine_free(c, pattern);
    return s;
}

static int key_matches(const redisReply *k, const char *glob, size_t glob_len)
{
    return k->type == REDIS_REPLY_STRING && kvi_glob_match(glob, glob_len, k->str, k->len);
}

static kvi_status keys_page(kvi_conn *c, struct kvi_redis_node *node, int is_cluster,
                            const redisReply *keys, const char *glob, size_t glob_len, void *ud)
{
    struct keyset *ks = ud;
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (key_matches(k, glob, glob_len) && keyset_add(c, ks, k->str, k->len) != 0)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    return KVI_OK;
}

static kvi_status redis_keys(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out)
{
    struct keyset ks;
    memset(&ks, 0, sizeof ks);

    kvi_status s = scan_all(c, glob, glob_len, keys_page, &ks);
    kvi_reply *a = NULL;
    if (s == KVI_OK && (a = kvi_reply_new_array(ks.n)) == NULL)
        s = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    for (size_t i = 0; s == KVI_OK && i < ks.n; i++) {
        kvi_reply *e = kvi_reply_new_string(KVI_REPLY_STRING, ks.keys[i], ks.lens[i]);
        if (e == NULL || kvi_reply_append(a, e) != KVI_OK) {
            kvi_reply_free(e);
            s = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        }
    }
    keyset_free(c, &ks);
    if (s != KVI_OK) {
        kvi_reply_free(a);
        return s;
    }
    *out = a;
    return KVI_OK;
}

/* Cluster: the keys of one SCAN page may live in different slots, so each
 * gets its own DEL, all pipelined to the node that listed them; a key that
 * moved meanwhile (MOVED/ASK) is deleted again through normal routing. */
static kvi_status remove_cluster_keys(kvi_conn *c, struct kvi_redis_node *node,
                                      const redisReply **keys, size_t count, uint64_t *removed)
{
    struct kvi_redis_cmd *cmds = kvi_engine_malloc(c, count * sizeof *cmds);
    const char **argv = kvi_engine_malloc(c, 2 * count * sizeof *argv);
    size_t *lens = kvi_engine_malloc(c, 2 * count * sizeof *lens);
    redisReply **replies = kvi_engine_malloc(c, count * sizeof *replies);
    int waits = rpriv(c)->cfg.wait_replicas > 0;
    kvi_status s = KVI_OK;

    if (cmds == NULL || argv == NULL || lens == NULL || replies == NULL) {
        s = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        argv[2 * i] = "DEL";
        lens[2 * i] = 3;
        argv[2 * i + 1] = keys[i]->str;
        lens[2 * i + 1] = keys[i]->len;
        cmds[i] = (struct kvi_redis_cmd){.argc = 2,
                                         .argv = &argv[2 * i],
                                         .lens = &lens[2 * i],
                                         .key = keys[i]->str,
                                         .key_len = keys[i]->len,
                                         .is_write = 1};
        replies[i] = NULL;
    }
    /* With wait_replicas every DEL needs its own WAIT: the routed path. */
    if (!waits)
        s = kvi__redis_pipeline_on(c, node, count, cmds, replies);
    for (size_t i = 0; s == KVI_OK && i < count; i++) {
        redisReply *r = replies[i];
        replies[i] = NULL;
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            freeReplyObject(r);
            s = kvi__redis_exec(c, &cmds[i], &r);
            if (s != KVI_OK)
                break;
        }
        if (r->type != REDIS_REPLY_INTEGER) {
            s = kvi__redis_unexpected(c, r, "DEL");
            break;
        }
        *removed += (uint64_t)r->integer;
        freeReplyObject(r);
    }
out:
    if (replies != NULL)
        for (size_t i = 0; i < count; i++)
            freeReplyObject(replies[i]);
    kvi_engine_free(c, cmds);
    kvi_engine_free(c, argv);
    kvi_engine_free(c, lens);
    kvi_engine_free(c, replies);
    return s;
}

static kvi_status remove_page(kvi_conn *c, struct kvi_redis_node *node, int is_cluster,
                              const redisReply *keys, const char *glob, size_t glob_len, void *ud)
{
    uint64_t *removed = ud;
    size_t n = 0;
    const redisReply **matched = kvi_engine_malloc(c, (keys->elements + 1) * sizeof *matched);
    const char **argv = kvi_engine_malloc(c, (keys->elements + 1) * sizeof *argv);
    size_t *lens = kvi_engine_malloc(c, (keys->elements + 1) * sizeof *lens);
    kvi_status s = KVI_OK;

    if (matched == NULL || argv == NULL || lens == NULL) {
        s = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < keys->elements; i++)
        if (key_matches(keys->element[i], glob, glob_len))
            matched[n++] = keys->element[i];
    if (n == 0)
        goto out;
    if (is_cluster) {
        s = remove_cluster_keys(c, node, matched, n, removed);
        goto out;
    }
    /* Standalone: one DEL for the whole page. */
    argv[0] = "DEL";
    lens[0] = 3;
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = matched[i]->str;
        lens[i + 1] = matched[i]->len;
    }
    struct kvi_redis_cmd cmd = {
        .argc = (int)n + 1, .argv = argv, .lens = lens, .is_write = 1};
    redisReply *r;
    s = kvi__redis_exec_on(c, node, &cmd, &r);
    if (s == KVI_OK && r->type != REDIS_REPLY_INTEGER) {
        s = kvi__redis_unexpected(c, r, "DEL");
    } else if (s == KVI_OK) {
        *removed += (uint64_t)r->integer;
        freeReplyObject(r);
    }
out:
    kvi_engine_free(c, matched);
    kvi_engine_free(c, argv);
    kvi_engine_free(c, lens);
    return s;
}

static kvi_status redis_remove_chunk(kvi_conn *c, const char *glob, size_t glob_len,
                                    uint64_t *removed)
{
    uint64_t n = 0;
    kvi_status s = scan_all(c, glob, glob_len, remove_page, &n);
    kvi__redis_nc_drop_all(c);
    /* Keys removed before a failure stay removed: report them anyway. */
    *removed = n;
    return s;
}

/* The counter slots (counter.c), then the near cache's drop of the key. */
static kvi_status redis_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                            int64_t expire_s, int64_t *new_value)
{
    kvi_status s = kvi__redis_add(c, key, key_len, delta, expire_s, new_value);
    kvi__redis_nc_drop(c, key, key_len);
    return s;
}

static kvi_status redis_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                    int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    kvi_status s = kvi__redis_add_bounded(c, key, key_len, delta, expire_s, min, max, value);
    kvi__redis_nc_drop(c, key, key_len);
    return s;
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
    .store = redis_store,
    .fetch = redis_fetch,
    .remove = redis_remove,
    .add = redis_add,
    .counter_fetch = kvi__redis_counter_fetch,
    .raw_query = redis_raw_query,
    .keys = redis_keys,
    .remove_chunk = redis_remove_chunk,
    .ttl = redis_ttl,
    .add_bounded = redis_add_bounded,
    .store_nx = redis_store_nx,
    .ping = redis_ping,
    .stats = kvi__redis_nc_stats,
    .batch = kvi__redis_batch,
    .async = &kvi__redis_async,
};

/* KVI_ENGINE_MODULE defines this function; its prototype keeps
 * -Wmissing-prototypes quiet. */
const struct kvi_engine *kvi_module_engine(void);
KVI_ENGINE_MODULE(kvi_engine_redis)
