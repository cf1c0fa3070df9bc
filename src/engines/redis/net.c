/*
 * net.c -- connections, pools, failover, cluster routing and error mapping
 * of the redis engine (see net.h).
 *
 * Layout of the state:
 *   struct kvi_redis (per kvi_conn, immutable cfg)
 *     -> state (per process: rebuilt in a child after fork())
 *          nodes: every server known, never freed before close
 *            each with a mutex-guarded list of idle hiredis contexts
 *          seeds: the URL's hosts (standalone: the failover list)
 *          slots: cluster slot -> master node, under a rwlock
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

enum { MODE_UNKNOWN = 0, MODE_STANDALONE = 1, MODE_CLUSTER = 2 };

/* Redirections and retries one call may take in a cluster. */
#define MAX_ATTEMPTS 16
/* Backoff before retrying TRYAGAIN, CLUSTERDOWN or an unreachable master:
 * 10, 20, 40, ... ms, at most MAX_SLEEPS times per call. */
#define BACKOFF_FIRST_MS 10
#define MAX_SLEEPS 6
/* A map refresh that is not forced happens at most this often. */
#define REFRESH_INTERVAL_MS 100

const char kvi__redis_add_script[] =
    "local created = redis.call('EXISTS', KEYS[1]) == 0\n"
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if created and ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"
    "return redis.call('GET', KEYS[1])\n";

struct rconn {
    redisContext *ctx;
    struct rconn *next;
};

struct kvi_redis_node {
    char *host; /* NULL for a unix socket */
    char *path; /* unix socket path or NULL */
    uint16_t port;
    char *name; /* "host:port" or the path */
    pthread_mutex_t mu;
    struct rconn *idle;
    size_t nidle;
    atomic_int script_loaded;
    struct kvi_redis_node *next;
};

struct kvi_redis_state {
    pid_t pid;
    pthread_rwlock_t lock; /* nodes list and slots */
    struct kvi_redis_node *nodes;
    struct kvi_redis_node **seeds;
    size_t nseeds;
    atomic_size_t current; /* standalone: seed that worked last */
    atomic_int mode;
    struct kvi_redis_node **slots; /* KVI_REDIS_SLOTS entries */
    atomic_int have_map;
    atomic_int_least64_t last_refresh_ms;
    atomic_uint rr;
    struct kvi_redis_state *retired; /* a parent process's state */
};

/* A slot range of a cluster map being read. */
struct range {
    unsigned start, end;
    char host[256];
    uint16_t port;
};

static struct kvi_redis *rpriv(kvi_conn *c)
{
    return kvi_conn_priv(c);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static struct timeval tv_ms(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---------------------------------------------------------------------- */
/* Error mapping: the only place hiredis and server errors become statuses. */

/* Copies msg into buf with every occurrence of the password replaced by
 * "***" (servers do not echo it, but a message must never risk it). */
static const char *masked(kvi_conn *c, const char *msg, char *buf, size_t buflen)
{
    const char *pw = rpriv(c)->cfg.password;
    size_t o = 0;

    if (pw == NULL || pw[0] == '\0' || strstr(msg, pw) == NULL)
        return msg;
    size_t pwlen = strlen(pw);
    while (*msg != '\0' && o + 4 < buflen) {
        if (strncmp(msg, pw, pwlen) == 0) {
            memcpy(buf + o, "***", 3);
            o += 3;
            msg += pwlen;
        } else {
            buf[o++] = *msg++;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* Maps a failed hiredis context (err_no: errno right after the failing
 * call) to a status. */
static kvi_status io_error(kvi_conn *c, const struct kvi_redis_node *n, const redisContext *ctx,
                           int err_no, int connecting)
{
    const char *what = connecting ? "connect to" : "request to";
    kvi_status st;

    switch (ctx->err) {
    case REDIS_ERR_IO:
        if (err_no == EAGAIN || err_no == EWOULDBLOCK || err_no == ETIMEDOUT ||
            strstr(ctx->errstr, "timed out") != NULL ||
            strstr(ctx->errstr, "temporarily unavailable") != NULL) {
            uint32_t ms = connecting ? rpriv(c)->cfg.connect_timeout_ms : rpriv(c)->cfg.timeout_ms;
            return kvi_engine_error(c, KVI_E_TIMEOUT, "%s %s: timed out after %u ms", what, n->name,
                                    (unsigned)ms);
        }
        st = connecting || err_no == ECONNRESET || err_no == EPIPE || err_no == ENOTCONN ||
                     err_no == ECONNREFUSED
                 ? KVI_E_CONNECT
                 : KVI_E_IO;
        break;
    case REDIS_ERR_EOF:
        st = KVI_E_CONNECT;
        break;
    case REDIS_ERR_PROTOCOL:
        st = KVI_E_PROTOCOL;
        break;
    case REDIS_ERR_OOM:
        st = KVI_E_NOMEM;
        break;
    default:
        st = connecting ? KVI_E_CONNECT : KVI_E_IO;
        break;
    }
    return kvi_engine_error(c, st, "%s %s: %s", what, n->name, ctx->errstr);
}

static int starts_with(const char *s, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    return len >= pl && memcmp(s, prefix, pl) == 0;
}

static int is_auth_error(const redisReply *r)
{
    return starts_with(r->str, r->len, "NOAUTH") || starts_with(r->str, r->len, "WRONGPASS") ||
           starts_with(r->str, r->len, "NOPERM") || strstr(r->str, "invalid password") ||
           strstr(r->str, "invalid username-password") ||
           strstr(r->str, "without any password configured");
}

/* See net.h. */
kvi_status kvi__redis_reply_error(kvi_conn *c, const redisReply *r)
{
    char buf[512];
    const char *msg = masked(c, r->str != NULL ? r->str : "", buf, sizeof buf);

    if (is_auth_error(r))
        return kvi_engine_error(c, KVI_E_AUTH, "authentication failed: %s", msg);
    if (starts_with(r->str, r->len, "OOM"))
        return kvi_engine_error(c, KVI_E_STORE_FULL, "%s", msg);
    return kvi_engine_error(c, KVI_E_BACKEND, "%s", msg);
}

/* ---------------------------------------------------------------------- */
/* Nodes and pools                                                         */

static struct kvi_redis_node *node_new(kvi_conn *c, const char *host, uint16_t port,
                                       const char *path)
{
    struct kvi_redis_node *n = kvi_engine_malloc(c, sizeof *n);
    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof *n);
    const char *src = path != NULL ? path : host;
    size_t len = strlen(src);
    n->name = kvi_engine_malloc(c, len + 16);
    char *copy = kvi_engine_malloc(c, len + 1);
    if (n->name == NULL || copy == NULL) {
        kvi_engine_free(c, n->name);
        kvi_engine_free(c, copy);
        kvi_engine_free(c, n);
        return NULL;
    }
    memcpy(copy, src, len + 1);
    if (path != NULL) {
        n->path = copy;
        memcpy(n->name, path, len + 1);
    } else {
        n->host = copy;
        /* An IPv6 address gets brackets so that the port stays readable. */
        if (strchr(host, ':') != NULL)
            snprintf(n->name, len + 16, "[%s]:%u", host, (unsigned)port);
        else
            snprintf(n->name, len + 16, "%s:%u", host, (unsigned)port);
    }
    n->port = port;
    pthread_mutex_init(&n->mu, NULL);
    atomic_init(&n->script_loaded, 0);
    return n;
}

static void rconn_free(kvi_conn *c, struct rconn *rc)
{
    if (rc == NULL)
        return;
    redisFree(rc->ctx);
    kvi_engine_free(c, rc);
}

/* Frees a node and its idle connections.  Also used in a forked child on
 * a parent's node, whose mutex is then never touched. */
static void node_free(kvi_conn *c, struct kvi_redis_node *n, int destroy_mutex)
{
    struct rconn *rc = n->idle;
    while (rc != NULL) {
        struct rconn *next = rc->next;
        rconn_free(c, rc);
        rc = next;
    }
    if (destroy_mutex)
        pthread_mutex_destroy(&n->mu);
    kvi_engine_free(c, n->host);
    kvi_engine_free(c, n->path);
    kvi_engine_free(c, n->name);
    kvi_engine_free(c, n);
}

/* A pooled connection is dead when the server closed it (or sent something
 * nobody asked for): readable while idle. */
static int rconn_alive(const struct rconn *rc)
{
    struct pollfd p = {.fd = rc->ctx->fd, .events = POLLIN};
    return rc->ctx->err == 0 && poll(&p, 1, 0) == 0;
}

static struct rconn *pool_pop(kvi_conn *c, struct kvi_redis_node *n)
{
    for (;;) {
        pthread_mutex_lock(&n->mu);
        struct rconn *rc = n->idle;
        if (rc != NULL) {
            n->idle = rc->next;
            n->nidle--;
        }
        pthread_mutex_unlock(&n->mu);
        if (rc == NULL || rconn_alive(rc))
            return rc;
        rconn_free(c, rc);
    }
}

static void pool_push(kvi_conn *c, struct kvi_redis_node *n, struct rconn *rc)
{
    pthread_mutex_lock(&n->mu);
    if (n->nidle < rpriv(c)->cfg.max_idle) {
        rc->next = n->idle;
        n->idle = rc;
        n->nidle++;
        rc = NULL;
    }
    pthread_mutex_unlock(&n->mu);
    rconn_free(c, rc);
}

/* Node host:port of a state, created when unknown.  Caller holds the
 * write lock.  NULL when out of memory. */
static struct kvi_redis_node *node_get_locked(kvi_conn *c, struct kvi_redis_state *st,
                                              const char *host, uint16_t port)
{
    struct kvi_redis_node *n;

    for (n = st->nodes; n != NULL; n = n->next)
        if (n->host != NULL && n->port == port && strcmp(n->host, host) == 0)
            return n;
    n = node_new(c, host, port, NULL);
    if (n == NULL)
        return NULL;
    n->next = st->nodes;
    st->nodes = n;
    return n;
}

static struct kvi_redis_node *node_get(kvi_conn *c, struct kvi_redis_state *st, const char *host,
                                       uint16_t port)
{
    pthread_rwlock_wrlock(&st->lock);
    struct kvi_redis_node *n = node_get_locked(c, st, host, port);
    pthread_rwlock_unlock(&st->lock);
    return n;
}

/* ---------------------------------------------------------------------- */
/* Opening a connection                                                    */

/* 1 when the reader waits for the body of a bulk string whose announced
 * length is beyond limit.  hiredis re-parses a bulk length until the whole
 * body has arrived, so that length sits at the reader's cursor; refusing
 * it keeps a broken or hostile server from making us buffer without end. */
static int pending_bulk_too_long(const redisReader *rd, uint64_t limit)
{
    if (rd->buf == NULL || rd->pos >= rd->len || rd->ridx < 0 ||
        rd->rstack[rd->ridx].type != REDIS_REPLY_STRING)
        return 0;
    /* The type byte '$' has been consumed; the cursor is on the length. */
    uint64_t v = 0;
    for (size_t i = rd->pos; i < rd->len && rd->buf[i] >= '0' && rd->buf[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(rd->buf[i] - '0');
        if (v > limit)
            return 1;
    }
    return 0;
}

static kvi_status timed_out(kvi_conn *c, const struct kvi_redis_node *n, int connecting)
{
    uint32_t ms = connecting ? rpriv(c)->cfg.connect_timeout_ms : rpriv(c)->cfg.timeout_ms;
    return kvi_engine_error(c, KVI_E_TIMEOUT, "%s %s: timed out after %u ms",
                            connecting ? "connect to" : "request to", n->name, (unsigned)ms);
}

/* Waits until fd is ready for events or the deadline (ms on the monotonic
 * clock, 0 = none) passes: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = -1;
        if (deadline > 0) {
            int64_t d = deadline - mono_ms();
            if (d <= 0)
                return 0;
            left = d > INT32_MAX ? INT32_MAX : (int)d;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Writes out what was appended to ctx and reads one reply, all before the
 * deadline: a server that trickles a byte at a time cannot stretch a call
 * past it (SO_RCVTIMEO alone limits each read(), not the reply). */
static kvi_status get_reply(kvi_conn *c, const struct kvi_redis_node *n, redisContext *ctx,
                            int64_t deadline, int connecting, void **out)
{
    int done = 0;
    while (!done) {
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return io_error(c, n, ctx, errno, connecting);
        if (!done && wait_fd(ctx->fd, POLLOUT, deadline) == 0)
            return timed_out(c, n, connecting);
    }
    /* The first read goes straight to the blocking socket, whose
     * SO_RCVTIMEO is the call's timeout: most replies arrive in one read and
     * need no poll() first (a poll per request cost ~5% against raw
     * hiredis).  Later reads poll against the whole call's deadline. */
    int first = 1;
    for (;;) {
        void *r = NULL;
        if (redisGetReplyFromReader(ctx, &r) != REDIS_OK)
            return io_error(c, n, ctx, errno, connecting);
        if (r != NULL) {
            *out = r;
            return KVI_OK;
        }
        if (pending_bulk_too_long(ctx->reader, KVI_MAX_VALUE_LEN))
            return kvi_engine_error(c, KVI_E_PROTOCOL,
                                    "reply from %s announces a string longer than %u bytes",
                                    n->name, (unsigned)KVI_MAX_VALUE_LEN);
        if (first && !connecting) {
            first = 0;
            if (redisBufferRead(ctx) != REDIS_OK)
                return io_error(c, n, ctx, errno, connecting);
            continue;
        }
        int w = wait_fd(ctx->fd, POLLIN, deadline);
        if (w == 0)
            return timed_out(c, n, connecting);
        if (w < 0)
            return kvi_engine_error(c, KVI_E_IO, "poll on %s: %s", n->name, strerror(errno));
        if (redisBufferRead(ctx) != REDIS_OK)
            return io_error(c, n, ctx, errno, connecting);
    }
}

static int64_t deadline_after(uint32_t ms)
{
    return ms > 0 ? mono_ms() + ms : 0;
}

/* Sends AUTH / SELECT / SCRIPT LOAD in one round trip on a new context. */
static kvi_status conn_setup(kvi_conn *c, struct kvi_redis_state *st, struct kvi_redis_node *n,
                             redisContext *ctx)
{
    const struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    enum { REQ_AUTH, REQ_SELECT, REQ_SCRIPT };
    int reqs[3], nreq = 0;
    char dbtext[24];

    if (cfg->password != NULL) {
        const char *argv[3] = {"AUTH", cfg->user, cfg->password};
        size_t lens[3] = {4, cfg->user ? strlen(cfg->user) : 0, strlen(cfg->password)};
        if (cfg->user == NULL) {
            argv[1] = cfg->password;
            lens[1] = lens[2];
        }
        redisAppendCommandArgv(ctx, cfg->user ? 3 : 2, argv, lens);
        reqs[nreq++] = REQ_AUTH;
    }
    if (cfg->db > 0 && atomic_load(&st->mode) != MODE_CLUSTER) {
        snprintf(dbtext, sizeof dbtext, "%ld", cfg->db);
        const char *argv[2] = {"SELECT", dbtext};
        size_t lens[2] = {6, strlen(dbtext)};
        redisAppendCommandArgv(ctx, 2, argv, lens);
        reqs[nreq++] = REQ_SELECT;
    }
    if (!atomic_load(&n->script_loaded)) {
        const char *argv[3] = {"SCRIPT", "LOAD", kvi__redis_add_script};
        size_t lens[3] = {6, 4, strlen(kvi__redis_add_script)};
        redisAppendCommandArgv(ctx, 3, argv, lens);
        reqs[nreq++] = REQ_SCRIPT;
    }
    kvi_status result = KVI_OK;
    int64_t deadline = deadline_after(cfg->connect_timeout_ms);
    for (int i = 0; i < nreq; i++) {
        void *v = NULL;
        kvi_status s = get_reply(c, n, ctx, deadline, 1, &v);
        if (s != KVI_OK)
            return s;
        redisReply *r = v;
        if (result == KVI_OK && r->type == REDIS_REPLY_ERROR) {
            char buf[512];
            const char *msg = masked(c, r->str, buf, sizeof buf);
            if (reqs[i] == REQ_AUTH)
                result = kvi_engine_error(c, KVI_E_AUTH, "authentication%s%s failed on %s: %s",
                                          cfg->user ? " as " : "", cfg->user ? cfg->user : "",
                                          n->name, msg);
            else if (starts_with(r->str, r->len, "LOADING"))
                result = kvi_engine_error(c, KVI_E_BACKEND, "%s: %s", n->name, msg);
            else if (reqs[i] == REQ_SELECT)
                result =
                    kvi_engine_error(c, is_auth_error(r) ? KVI_E_AUTH : KVI_E_INVALID,
                                     "cannot select database %ld on %s: %s", cfg->db, n->name, msg);
            else if (is_auth_error(r))
                result = kvi_engine_error(c, KVI_E_AUTH, "%s: %s", n->name, msg);
            /* Otherwise SCRIPT LOAD was refused (ACL): EVAL still works. */
        } else if (reqs[i] == REQ_SCRIPT && r->type == REDIS_REPLY_STRING && r->len == 40) {
            struct kvi_redis *rp = rpriv(c);
            int expected = 0;
            if (atomic_compare_exchange_strong(&rp->sha_state, &expected, 1)) {
                memcpy(rp->sha, r->str, 41);
                atomic_store(&rp->sha_state, 2);
            }
            atomic_store(&n->script_loaded, 1);
        }
        freeReplyObject(r);
    }
    return result;
}

static kvi_status conn_open(kvi_conn *c, struct kvi_redis_state *st, struct kvi_redis_node *n,
                            struct rconn **out)
{
    const struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    redisContext *ctx;

    if (cfg->connect_timeout_ms > 0) {
        struct timeval tv = tv_ms(cfg->connect_timeout_ms);
        ctx = n->path != NULL ? redisConnectUnixWithTimeout(n->path, tv)
                              : redisConnectWithTimeout(n->host, n->port, tv);
    } else {
        ctx = n->path != NULL ? redisConnectUnix(n->path) : redisConnect(n->host, n->port);
    }
    int err_no = errno;
    if (ctx == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "connect to %s: out of memory", n->name);
    if (ctx->err != 0) {
        kvi_status st_err = io_error(c, n, ctx, err_no, 1);
        redisFree(ctx);
        return st_err;
    }
    if (cfg->connect_timeout_ms > 0)
        redisSetTimeout(ctx, tv_ms(cfg->connect_timeout_ms));
    kvi_status s = conn_setup(c, st, n, ctx);
    if (s == KVI_OK && cfg->timeout_ms != cfg->connect_timeout_ms) {
        /* 0 = wait forever, as a zero timeval means to SO_RCVTIMEO. */
        if (redisSetTimeout(ctx, tv_ms(cfg->timeout_ms)) != REDIS_OK)
            s = io_error(c, n, ctx, errno, 1);
    }
    /* Keepalive notices a peer that vanished without closing (TCP only:
     * on a unix socket the call fails and poisons the context). */
    if (s == KVI_OK && n->path == NULL && redisEnableKeepAlive(ctx) != REDIS_OK)
        s = io_error(c, n, ctx, errno, 1);
    if (s != KVI_OK) {
        redisFree(ctx);
        return s;
    }
    struct rconn *rc = kvi_engine_malloc(c, sizeof *rc);
    if (rc == NULL) {
        redisFree(ctx);
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    rc->ctx = ctx;
    rc->next = NULL;
    *out = rc;
    return KVI_OK;
}

/* A connection to node n: an idle one (*reused = 1) or a new one. */
static kvi_status borrow(kvi_conn *c, struct kvi_redis_state *st, struct kvi_redis_node *n,
                         struct rconn **out, int *reused)
{
    *out = pool_pop(c, n);
    *reused = *out != NULL;
    if (*out != NULL)
        return KVI_OK;
    return conn_open(c, st, n, out);
}

/* One request (after ASKING when asking) and its reply. */
static kvi_status roundtrip(kvi_conn *c, struct kvi_redis_node *n, struct rconn *rc,
                            const struct kvi_redis_cmd *cmd, int asking, redisReply **out)
{
    const struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    int wait = cmd->is_write && cfg->wait_replicas > 0;
    int64_t deadline = deadline_after(cfg->timeout_ms);
    void *v = NULL;
    char nrep[16], wait_ms[16];

    if (wait && deadline > 0)
        deadline += cfg->wait_timeout_ms;
    if (asking)
        redisAppendCommand(rc->ctx, "ASKING");
    if (redisAppendCommandArgv(rc->ctx, cmd->argc, cmd->argv, cmd->lens) != REDIS_OK)
        return io_error(c, n, rc->ctx, errno, 0);
    if (wait) {
        /* In the same round trip: the server answers once the write has
         * reached that many replicas (or the WAIT timed out). */
        snprintf(nrep, sizeof nrep, "%u", cfg->wait_replicas);
        snprintf(wait_ms, sizeof wait_ms, "%u", (unsigned)cfg->wait_timeout_ms);
        const char *wargv[3] = {"WAIT", nrep, wait_ms};
        size_t wlens[3] = {4, strlen(nrep), strlen(wait_ms)};
        if (redisAppendCommandArgv(rc->ctx, 3, wargv, wlens) != REDIS_OK)
            return io_error(c, n, rc->ctx, errno, 0);
    }
    if (asking) {
        kvi_status s = get_reply(c, n, rc->ctx, deadline, 0, &v);
        if (s != KVI_OK)
            return s;
        freeReplyObject(v);
        v = NULL;
    }
    kvi_status s = get_reply(c, n, rc->ctx, deadline, 0, &v);
    if (s != KVI_OK)
        return s;
    if (wait) {
        void *w = NULL;
        s = get_reply(c, n, rc->ctx, deadline, 0, &w);
        if (s != KVI_OK) {
            freeReplyObject(v);
            return s;
        }
        redisReply *r = v, *wr = w;
        long long acked = wr->type == REDIS_REPLY_INTEGER ? wr->integer : -1;
        freeReplyObject(w);
        if (r->type != REDIS_REPLY_ERROR && acked < (long long)cfg->wait_replicas) {
            /* Applied on the master, but a failover could still lose it:
             * not an acknowledged write. */
            freeReplyObject(v);
            return kvi_engine_error(c, KVI_E_TIMEOUT,
                                    "write applied on %s but confirmed by %lld of %u replicas "
                                    "within %u ms; it may be lost in a failover",
                                    n->name, acked < 0 ? 0 : acked, cfg->wait_replicas,
                                    (unsigned)cfg->wait_timeout_ms);
        }
    }
    *out = v;
    return KVI_OK;
}

/* A failure after which the same request may be sent again on a new
 * connection, if the command allows it. */
static int retryable(kvi_status s)
{
    return s == KVI_E_CONNECT || s == KVI_E_IO;
}

/* See net.h. */
kvi_status kvi__redis_exec_on(kvi_conn *c, struct kvi_redis_node *n,
                              const struct kvi_redis_cmd *cmd, redisReply **out)
{
    struct kvi_redis_state *st = atomic_load(&rpriv(c)->state);

    for (int attempt = 0;; attempt++) {
        struct rconn *rc;
        int reused;
        kvi_status s = borrow(c, st, n, &rc, &reused);
        if (s != KVI_OK)
            return s;
        s = roundtrip(c, n, rc, cmd, 0, out);
        if (s == KVI_OK) {
            pool_push(c, n, rc);
            return KVI_OK;
        }
        rconn_free(c, rc);
        if (!(reused && cmd->resend_ok && retryable(s) && attempt == 0))
            return s;
    }
}

/* See net.h. */
kvi_status kvi__redis_pipeline_on(kvi_conn *c, struct kvi_redis_node *n, size_t count,
                                  const struct kvi_redis_cmd *cmds, redisReply **replies)
{
    struct kvi_redis_state *st = atomic_load(&rpriv(c)->state);
    struct rconn *rc;
    int reused;
    size_t got = 0;

    kvi_status s = borrow(c, st, n, &rc, &reused);
    if (s != KVI_OK)
        return s;
    for (size_t i = 0; i < count && s == KVI_OK; i++)
        if (redisAppendCommandArgv(rc->ctx, cmds[i].argc, cmds[i].argv, cmds[i].lens) != REDIS_OK)
            s = io_error(c, n, rc->ctx, errno, 0);
    for (; got < count && s == KVI_OK; got++) {
        void *v = NULL;
        /* Each reply gets the full timeout: a big batch is not a slow one. */
        s = get_reply(c, n, rc->ctx, deadline_after(rpriv(c)->cfg.timeout_ms), 0, &v);
        replies[got] = v;
    }
    if (s != KVI_OK) {
        for (size_t i = 0; i < got; i++) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        rconn_free(c, rc);
        return s;
    }
    pool_push(c, n, rc);
    return KVI_OK;
}

/* ---------------------------------------------------------------------- */
/* State                                                                   */

static void state_free(kvi_conn *c, struct kvi_redis_state *st)
{
    while (st != NULL) {
        struct kvi_redis_state *older = st->retired;
        int own = st->pid == getpid();
        struct kvi_redis_node *n = st->nodes;
        while (n != NULL) {
            struct kvi_redis_node *next = n->next;
            node_free(c, n, own);
            n = next;
        }
        if (own)
            pthread_rwlock_destroy(&st->lock);
        kvi_engine_free(c, st->seeds);
        kvi_engine_free(c, st->slots);
        kvi_engine_free(c, st);
        st = older;
    }
}

static struct kvi_redis_state *state_new(kvi_conn *c, int mode)
{
    const struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    struct kvi_redis_state *st = kvi_engine_malloc(c, sizeof *st);

    if (st == NULL)
        return NULL;
    memset(st, 0, sizeof *st);
    st->pid = getpid();
    pthread_rwlock_init(&st->lock, NULL);
    atomic_init(&st->current, 0);
    atomic_init(&st->mode, mode);
    atomic_init(&st->last_refresh_ms, 0);
    atomic_init(&st->rr, 0);
    size_t nseeds = cfg->socket != NULL ? 1 : cfg->nhosts;
    st->seeds = kvi_engine_malloc(c, nseeds * sizeof *st->seeds);
    st->slots = kvi_engine_malloc(c, KVI_REDIS_SLOTS * sizeof *st->slots);
    if (st->seeds == NULL || st->slots == NULL) {
        state_free(c, st);
        return NULL;
    }
    memset(st->slots, 0, KVI_REDIS_SLOTS * sizeof *st->slots);
    for (size_t i = 0; i < nseeds; i++) {
        struct kvi_redis_node *n;
        if (cfg->socket != NULL) {
            n = node_new(c, NULL, 0, cfg->socket);
            if (n != NULL) {
                n->next = st->nodes;
                st->nodes = n;
            }
        } else {
            /* A host listed twice is one node. */
            n = node_get_locked(c, st, cfg->hosts[i].host, cfg->hosts[i].port);
        }
        if (n == NULL) {
            state_free(c, st);
            return NULL;
        }
        st->seeds[st->nseeds++] = n;
    }
    return st;
}

/* The state of this process; after fork() a new one, so that the child
 * never touches its parent's sockets. */
static kvi_status state_get(kvi_conn *c, struct kvi_redis_state **out)
{
    struct kvi_redis *r = rpriv(c);
    struct kvi_redis_state *st = atomic_load(&r->state);

    if (st->pid == getpid()) {
        *out = st;
        return KVI_OK;
    }
    struct kvi_redis_state *fresh = state_new(c, atomic_load(&st->mode));
    if (fresh == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    fresh->retired = st;
    if (!atomic_compare_exchange_strong(&r->state, &st, fresh)) {
        /* Another thread of this child won; st is its state now. */
        fresh->retired = NULL;
        state_free(c, fresh);
    } else {
        st = fresh;
    }
    *out = st;
    return KVI_OK;
}

/* ---------------------------------------------------------------------- */
/* Cluster map                                                             */

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

static int add_range(struct range *ranges, size_t *count, size_t cap, long long start,
                     long long end, const char *host, const char *fallback_host, long long port)
{
    if (start < 0 || end >= KVI_REDIS_SLOTS || start > end || port <= 0 || port > 65535 ||
        *count >= cap)
        return -1;
    if (host == NULL || host[0] == '\0' || strcmp(host, "?") == 0)
        host = fallback_host;
    struct range *r = &ranges[(*count)++];
    r->start = (unsigned)start;
    r->end = (unsigned)end;
    snprintf(r->host, sizeof r->host, "%s", host);
    r->port = (uint16_t)port;
    return 0;
}

/* CLUSTER SHARDS (Redis >= 7): shards of {slots: [s, e, ...], nodes: [...]}
 * with each map a flat key/value array under RESP2. */
static int parse_shards(const redisReply *r, const char *asked, struct range *ranges, size_t *count,
                        size_t cap)
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
        const redisReply *port = map_get(master, "port");
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
static int parse_slots(const redisReply *r, const char *asked, struct range *ranges, size_t *count,
                       size_t cap)
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

/* Reads the slot map from node n.  KVI_E_UNSUPPORTED (no message) when n
 * is not a cluster node. */
static kvi_status fetch_map(kvi_conn *c, struct kvi_redis_node *n, struct range **ranges,
                            size_t *count)
{
    const char *argv[2] = {"CLUSTER", "SHARDS"};
    size_t lens[2] = {7, 6};
    struct kvi_redis_cmd cmd = {2, argv, lens, -1, 1, 0};
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
    if (r->type == REDIS_REPLY_ERROR) {
        s = kvi__redis_reply_error(c, r);
        freeReplyObject(r);
        return s;
    }
    size_t cap = max_ranges(r, shards);
    *ranges = kvi_engine_malloc(c, cap * sizeof **ranges);
    if (*ranges == NULL) {
        freeReplyObject(r);
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    *count = 0;
    const char *asked = n->host != NULL ? n->host : "127.0.0.1";
    int bad = shards ? parse_shards(r, asked, *ranges, count, cap)
                     : parse_slots(r, asked, *ranges, count, cap);
    freeReplyObject(r);
    if (bad) {
        kvi_engine_free(c, *ranges);
        *ranges = NULL;
        return kvi_engine_error(c, KVI_E_PROTOCOL, "unexpected CLUSTER %s reply from %s",
                                shards ? "SHARDS" : "SLOTS", n->name);
    }
    return KVI_OK;
}

static void install_map(kvi_conn *c, struct kvi_redis_state *st, const struct range *ranges,
                        size_t count)
{
    pthread_rwlock_wrlock(&st->lock);
    memset(st->slots, 0, KVI_REDIS_SLOTS * sizeof *st->slots);
    for (size_t i = 0; i < count; i++) {
        struct kvi_redis_node *n = node_get_locked(c, st, ranges[i].host, ranges[i].port);
        for (unsigned s = ranges[i].start; n != NULL && s <= ranges[i].end; s++)
            st->slots[s] = n;
    }
    atomic_store(&st->have_map, 1);
    pthread_rwlock_unlock(&st->lock);
}

/* Snapshot of every known node, seeds last (so a map is read from a node
 * the cluster told us about before falling back to the URL's hosts). */
static kvi_status node_snapshot(kvi_conn *c, struct kvi_redis_state *st,
                                struct kvi_redis_node ***out, size_t *count)
{
    pthread_rwlock_rdlock(&st->lock);
    size_t n = 0;
    for (struct kvi_redis_node *nd = st->nodes; nd != NULL; nd = nd->next)
        n++;
    struct kvi_redis_node **arr = kvi_engine_malloc(c, (n + 1) * sizeof *arr);
    if (arr != NULL) {
        size_t i = 0;
        for (struct kvi_redis_node *nd = st->nodes; nd != NULL; nd = nd->next)
            arr[i++] = nd;
    }
    pthread_rwlock_unlock(&st->lock);
    if (arr == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    *out = arr;
    *count = n;
    return KVI_OK;
}

/* Re-reads the slot map from the first node that answers.  Unless forced,
 * at most once per REFRESH_INTERVAL_MS (then KVI_OK without doing
 * anything). */
static kvi_status refresh_map(kvi_conn *c, struct kvi_redis_state *st, int force)
{
    int64_t now = mono_ms();
    int_least64_t last = atomic_load(&st->last_refresh_ms);

    if (!force && (now - last < REFRESH_INTERVAL_MS ||
                   !atomic_compare_exchange_strong(&st->last_refresh_ms, &last, now)))
        return KVI_OK;
    if (force)
        atomic_store(&st->last_refresh_ms, now);
    struct kvi_redis_node **nodes = NULL;
    size_t count = 0;
    kvi_status s = node_snapshot(c, st, &nodes, &count);
    if (s != KVI_OK)
        return s;
    s = kvi_engine_error(c, KVI_E_CONNECT, "no cluster node known");
    for (size_t i = 0; i < count; i++) {
        struct range *ranges = NULL;
        size_t nranges = 0;
        s = fetch_map(c, nodes[i], &ranges, &nranges);
        if (s == KVI_OK) {
            install_map(c, st, ranges, nranges);
            kvi_engine_free(c, ranges);
            break;
        }
        if (s == KVI_E_UNSUPPORTED)
            s = kvi_engine_error(c, KVI_E_BACKEND, "%s is not a cluster node", nodes[i]->name);
        if (s == KVI_E_AUTH || s == KVI_E_NOMEM)
            break;
    }
    kvi_engine_free(c, nodes);
    return s;
}

/* Decides standalone or cluster (cluster=auto asks the first seed that
 * answers). */
static kvi_status ensure_mode(kvi_conn *c, struct kvi_redis_state *st)
{
    const struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;

    if (atomic_load(&st->mode) != MODE_UNKNOWN)
        return KVI_OK;
    if (cfg->cluster == KVI_REDIS_CLUSTER_NO || cfg->socket != NULL) {
        atomic_store(&st->mode, MODE_STANDALONE);
        return KVI_OK;
    }
    if (cfg->cluster == KVI_REDIS_CLUSTER_YES) {
        kvi_status s = refresh_map(c, st, 1);
        if (s == KVI_OK)
            atomic_store(&st->mode, MODE_CLUSTER);
        return s;
    }
    kvi_status s = KVI_E_CONNECT;
    size_t first = atomic_load(&st->current);
    for (size_t i = 0; i < st->nseeds; i++) {
        size_t idx = (first + i) % st->nseeds;
        struct range *ranges = NULL;
        size_t nranges = 0;
        s = fetch_map(c, st->seeds[idx], &ranges, &nranges);
        if (s == KVI_E_UNSUPPORTED) {
            atomic_store(&st->current, idx);
            atomic_store(&st->mode, MODE_STANDALONE);
            return KVI_OK;
        }
        if (s == KVI_OK) {
            install_map(c, st, ranges, nranges);
            kvi_engine_free(c, ranges);
            atomic_store(&st->last_refresh_ms, mono_ms());
            atomic_store(&st->mode, MODE_CLUSTER);
            return KVI_OK;
        }
        if (s != KVI_E_CONNECT && s != KVI_E_TIMEOUT && s != KVI_E_IO)
            return s;
    }
    return s;
}

/* ---------------------------------------------------------------------- */
/* Executing commands                                                      */

static int is_error_kind(const redisReply *r, const char *kind)
{
    return r->type == REDIS_REPLY_ERROR && starts_with(r->str, r->len, kind) &&
           (r->len == strlen(kind) || r->str[strlen(kind)] == ' ');
}

static kvi_status exec_standalone(kvi_conn *c, struct kvi_redis_state *st,
                                  const struct kvi_redis_cmd *cmd, redisReply **out)
{
    const struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    int64_t deadline = mono_ms() + (cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000);
    int64_t backoff = BACKOFF_FIRST_MS;
    int sleeps = 0;

    for (int attempt = 0;; attempt++) {
        size_t cur = atomic_load(&st->current);
        struct kvi_redis_node *n = NULL;
        struct rconn *rc = NULL;
        int reused = 0;
        kvi_status s = KVI_E_CONNECT;
        /* The failover list: the host that worked last, then the others. */
        for (size_t i = 0; i < st->nseeds; i++) {
            size_t idx = (cur + i) % st->nseeds;
            n = st->seeds[idx];
            s = borrow(c, st, n, &rc, &reused);
            if (s == KVI_OK) {
                if (idx != cur) {
                    atomic_store(&st->current, idx);
                    kvi_engine_log(c, KVI_LOG_WARN, "failed over to %s", n->name);
                }
                break;
            }
            if (s == KVI_E_AUTH || s == KVI_E_NOMEM || s == KVI_E_INVALID)
                break;
        }
        if (s != KVI_OK)
            return s;
        s = roundtrip(c, n, rc, cmd, 0, out);
        if (s == KVI_OK) {
            pool_push(c, n, rc);
            /* A restarted server answers -LOADING until its data is read
             * back; the command did not run, so it may be sent again. */
            if (is_error_kind(*out, "LOADING") && sleeps < MAX_SLEEPS &&
                mono_ms() + backoff <= deadline) {
                freeReplyObject(*out);
                *out = NULL;
                sleep_ms(backoff);
                sleeps++;
                backoff *= 2;
                attempt = -1;
                continue;
            }
            return KVI_OK;
        }
        rconn_free(c, rc);
        if (!(reused && cmd->resend_ok && retryable(s) && attempt == 0))
            return s;
    }
}

static struct kvi_redis_node *slot_node(struct kvi_redis_state *st, int slot)
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

/* Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." into slot, host, port.
 * An empty host means the node that sent the redirection. */
static int parse_redirect(const redisReply *r, const struct kvi_redis_node *from, int *slot,
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
        if (from->host == NULL)
            return -1;
        snprintf(host, hostlen, "%s", from->host);
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
    const struct kvi_redis_cfg *cfg = &rpriv(c)->cfg;
    int64_t deadline = mono_ms() + (cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000);
    struct kvi_redis_node *target = NULL;
    int asking = 0, sleeps = 0, resent = 0;
    int64_t backoff = BACKOFF_FIRST_MS;
    kvi_status last = KVI_OK;
    redisReply *last_reply = NULL;

    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        struct kvi_redis_node *n = target != NULL ? target : slot_node(st, cmd->slot);
        int ask_now = asking;
        target = NULL;
        asking = 0;
        if (n == NULL) {
            kvi_status s = refresh_map(c, st, 1);
            n = slot_node(st, cmd->slot);
            if (n == NULL) {
                last = s != KVI_OK ? s
                                   : kvi_engine_error(c, KVI_E_BACKEND,
                                                      "no cluster node serves slot %d", cmd->slot);
                goto backoff;
            }
        }
        struct rconn *rc;
        int reused;
        kvi_status s = borrow(c, st, n, &rc, &reused);
        if (s != KVI_OK) {
            if (s == KVI_E_AUTH || s == KVI_E_NOMEM || s == KVI_E_INVALID)
                return s;
            /* The master may be gone and a replica about to take over. */
            last = s;
            refresh_map(c, st, 0);
            goto backoff;
        }
        redisReply *r = NULL;
        s = roundtrip(c, n, rc, cmd, ask_now, &r);
        if (s != KVI_OK) {
            rconn_free(c, rc);
            if (reused && cmd->resend_ok && retryable(s) && !resent) {
                resent = 1;
                refresh_map(c, st, 0);
                continue;
            }
            refresh_map(c, st, 0);
            freeReplyObject(last_reply);
            return s;
        }
        pool_push(c, n, rc);
        if (is_error_kind(r, "MOVED") || is_error_kind(r, "ASK")) {
            int moved = r->str[0] == 'M', slot;
            char host[256];
            uint16_t port;
            if (parse_redirect(r, n, &slot, host, sizeof host, &port) != 0) {
                s = kvi_engine_error(c, KVI_E_PROTOCOL, "bad redirection from %s: %.100s", n->name,
                                     r->str);
                freeReplyObject(r);
                freeReplyObject(last_reply);
                return s;
            }
            freeReplyObject(r);
            target = node_get(c, st, host, port);
            if (target == NULL) {
                freeReplyObject(last_reply);
                return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
            }
            if (moved) {
                pthread_rwlock_wrlock(&st->lock);
                st->slots[slot] = target;
                pthread_rwlock_unlock(&st->lock);
                refresh_map(c, st, 0);
            } else {
                asking = 1;
            }
            continue;
        }
        if (is_error_kind(r, "TRYAGAIN") || is_error_kind(r, "CLUSTERDOWN") ||
            is_error_kind(r, "LOADING")) {
            freeReplyObject(last_reply);
            last_reply = r;
            last = KVI_OK;
            if (is_error_kind(r, "CLUSTERDOWN"))
                refresh_map(c, st, 0);
            goto backoff;
        }
        freeReplyObject(last_reply);
        *out = r;
        return KVI_OK;

    backoff:
        if (sleeps >= MAX_SLEEPS || mono_ms() + backoff > deadline)
            break;
        sleep_ms(backoff);
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
    kvi_status s = state_get(c, st);
    if (s == KVI_OK)
        s = ensure_mode(c, *st);
    return s;
}

/* See net.h. */
kvi_status kvi__redis_exec(kvi_conn *c, const struct kvi_redis_cmd *cmd, redisReply **out)
{
    struct kvi_redis_state *st;
    kvi_status s = current_state(c, &st);

    if (s != KVI_OK)
        return s;
    if (atomic_load(&st->mode) == MODE_CLUSTER)
        return exec_cluster(c, st, cmd, out);
    return exec_standalone(c, st, cmd, out);
}

/* See net.h. */
kvi_status kvi__redis_is_cluster(kvi_conn *c, int *is_cluster)
{
    struct kvi_redis_state *st;
    kvi_status s = current_state(c, &st);

    if (s == KVI_OK)
        *is_cluster = atomic_load(&st->mode) == MODE_CLUSTER;
    return s;
}

/* See net.h. */
kvi_status kvi__redis_masters(kvi_conn *c, struct kvi_redis_node ***nodes, size_t *count)
{
    struct kvi_redis_state *st;
    kvi_status s = current_state(c, &st);

    if (s != KVI_OK)
        return s;
    if (atomic_load(&st->mode) != MODE_CLUSTER) {
        /* Find the working host of the failover list first. */
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        struct kvi_redis_cmd ping = {1, argv, lens, -1, 1, 0};
        redisReply *r = NULL;
        s = exec_standalone(c, st, &ping, &r);
        if (s != KVI_OK)
            return s;
        freeReplyObject(r);
        *nodes = kvi_engine_malloc(c, sizeof **nodes);
        if (*nodes == NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        (*nodes)[0] = st->seeds[atomic_load(&st->current)];
        *count = 1;
        return KVI_OK;
    }
    if (!atomic_load(&st->have_map)) {
        s = refresh_map(c, st, 1);
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

/* See net.h. */
const char *kvi__redis_node_name(const struct kvi_redis_node *node)
{
    return node->name;
}

/* See net.h. */
kvi_status kvi__redis_net_open(kvi_conn *c)
{
    struct kvi_redis *r = rpriv(c);
    struct kvi_redis_state *st = state_new(c, MODE_UNKNOWN);

    if (st == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    atomic_store(&r->state, st);
    if (kvi_conn_lazy(c))
        return KVI_OK;
    kvi_status s = ensure_mode(c, st);
    if (s == KVI_OK && atomic_load(&st->mode) == MODE_STANDALONE) {
        /* Connect now (also checks the credentials and the database). */
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        struct kvi_redis_cmd ping = {1, argv, lens, -1, 1, 0};
        redisReply *reply = NULL;
        s = exec_standalone(c, st, &ping, &reply);
        if (s == KVI_OK && reply->type == REDIS_REPLY_ERROR)
            s = kvi__redis_reply_error(c, reply);
        freeReplyObject(reply);
    }
    return s;
}

/* See net.h. */
void kvi__redis_net_close(kvi_conn *c)
{
    struct kvi_redis *r = rpriv(c);
    state_free(c, atomic_load(&r->state));
    atomic_store(&r->state, NULL);
}
