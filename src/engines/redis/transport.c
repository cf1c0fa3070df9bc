/*
 * transport.c -- one hiredis context: connect, set-up, deadline-bounded
 * I/O (see transport.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "deep.h"
#include "error.h"
#include "transport.h"

/* See transport.h. */
int64_t kvi__redis_deadline_after(uint32_t ms)
{
    return ms > 0 ? kvi_monotonic_ms() + ms : 0;
}

static struct timeval tv_ms(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

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

/* Waits until fd is ready for events or the deadline (ms on the monotonic
 * clock, 0 = none) passes: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = -1;
        if (deadline > 0) {
            int64_t d = deadline - kvi_monotonic_ms();
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

/* See transport.h.  SO_RCVTIMEO alone limits each read(), not the reply. */
kvi_status kvi__redis_get_reply(kvi_conn *c, const struct kvi_redis_addr *a, redisContext *ctx,
                                int64_t deadline, int connecting, void **out)
{
    int done = 0;
    while (!done) {
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return kvi__redis_io_error(c, a->name, ctx, errno, connecting);
        if (!done && wait_fd(ctx->fd, POLLOUT, deadline) == 0)
            return kvi__redis_timed_out(c, a->name, connecting);
    }
    /* The first read goes straight to the blocking socket, whose
     * SO_RCVTIMEO is the call's timeout: most replies arrive in one read and
     * need no poll() first (a poll per request cost ~5% against raw
     * hiredis).  Later reads poll against the whole call's deadline. */
    int first = 1;
    for (;;) {
        void *r = NULL;
        if (redisGetReplyFromReader(ctx, &r) != REDIS_OK)
            return kvi__redis_io_error(c, a->name, ctx, errno, connecting);
        if (r != NULL) {
            *out = r;
            return KVI_OK;
        }
        if (pending_bulk_too_long(ctx->reader, KVI_MAX_VALUE_LEN))
            return kvi_engine_error(c, KVI_E_PROTOCOL,
                                    "reply from %s announces a string longer than %u bytes",
                                    a->name, (unsigned)KVI_MAX_VALUE_LEN);
        if (first && !connecting) {
            first = 0;
            if (redisBufferRead(ctx) != REDIS_OK)
                return kvi__redis_io_error(c, a->name, ctx, errno, connecting);
            continue;
        }
        int w = wait_fd(ctx->fd, POLLIN, deadline);
        if (w == 0)
            return kvi__redis_timed_out(c, a->name, connecting);
        if (w < 0)
            return kvi_engine_error(c, KVI_E_IO, "poll on %s: %s", a->name, strerror(errno));
        if (redisBufferRead(ctx) != REDIS_OK)
            return kvi__redis_io_error(c, a->name, ctx, errno, connecting);
    }
}

/* The reply to a request already written out, read with deep.c instead of
 * hiredis's reader (which stops at 7 levels), before the deadline.  Bytes
 * hiredis buffered already (after an ASKING reply) are taken over. */
static kvi_status get_deep_reply(kvi_conn *c, const struct kvi_redis_addr *a, redisContext *ctx,
                                 int64_t deadline, redisReply **out)
{
    struct kvi_redis_deep *d = kvi__redis_deep_new();
    redisReader *rd = ctx->reader;
    char err[128], chunk[16384];
    redisReply *r = NULL;
    int done = 0;

    if (d == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    if (rd->buf != NULL && rd->pos < rd->len) {
        done = kvi__redis_deep_feed(d, rd->buf + rd->pos, rd->len - rd->pos, KVI_MAX_VALUE_LEN, &r,
                                    err, sizeof err);
        rd->pos = rd->len;
    }
    while (done == 0) {
        int w = wait_fd(ctx->fd, POLLIN, deadline);
        if (w == 0) {
            kvi__redis_deep_free(d);
            return kvi__redis_timed_out(c, a->name, 0);
        }
        ssize_t n = w < 0 ? -1 : read(ctx->fd, chunk, sizeof chunk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            kvi_status st =
                n == 0
                    ? kvi_engine_error(c, KVI_E_CONNECT,
                                       "request to %s: server closed the connection", a->name)
                    : kvi_engine_error(c, KVI_E_IO, "request to %s: %s", a->name, strerror(errno));
            kvi__redis_deep_free(d);
            return st;
        }
        done = kvi__redis_deep_feed(d, chunk, (size_t)n, KVI_MAX_VALUE_LEN, &r, err, sizeof err);
    }
    kvi__redis_deep_free(d);
    if (done < 0)
        return kvi_engine_error(c, KVI_E_PROTOCOL, "reply from %s: %s", a->name, err);
    *out = r;
    return KVI_OK;
}

/* What each request of the set-up round trip was. */
enum { REQ_AUTH, REQ_SELECT, REQ_SCRIPT };

/* The status of a refused set-up request (KVI_OK: not fatal). */
static kvi_status setup_error(kvi_conn *c, const struct kvi_redis_addr *a, int req,
                              const redisReply *r)
{
    const struct kvi_redis_cfg *cfg = &kvi__redis_priv(c)->cfg;
    const char *msg = r->str; /* kvi_engine_error scrubs the password */

    if (req == REQ_AUTH)
        return kvi_engine_error(c, KVI_E_AUTH, "authentication%s%s failed on %s: %s",
                                cfg->user ? " as " : "", cfg->user ? cfg->user : "", a->name, msg);
    if (kvi__redis_starts_with(r->str, r->len, "LOADING"))
        return kvi_engine_error(c, KVI_E_BACKEND, "%s: %s", a->name, msg);
    if (req == REQ_SELECT)
        return kvi_engine_error(c, kvi__redis_is_auth_error(r) ? KVI_E_AUTH : KVI_E_INVALID,
                                "cannot select database %ld on %s: %s", cfg->db, a->name, msg);
    if (kvi__redis_is_auth_error(r))
        return kvi_engine_error(c, KVI_E_AUTH, "%s: %s", a->name, msg);
    /* Otherwise SCRIPT LOAD was refused (ACL): EVAL still works. */
    return KVI_OK;
}

/* Sends AUTH / SELECT / SCRIPT LOAD in one round trip on a new context. */
static kvi_status conn_setup(kvi_conn *c, const struct kvi_redis_addr *a, redisContext *ctx,
                             int select_db, int load_scripts, int *scripts_loaded)
{
    struct kvi_redis *rp = kvi__redis_priv(c);
    const struct kvi_redis_cfg *cfg = &rp->cfg;
    int reqs[2 + KVI_REDIS_NSCRIPTS], nreq = 0, nscripts = 0, nloaded = 0;
    struct kvi_redis_script *script_of[2 + KVI_REDIS_NSCRIPTS];
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
    if (cfg->db > 0 && select_db) {
        snprintf(dbtext, sizeof dbtext, "%ld", cfg->db);
        const char *argv[2] = {"SELECT", dbtext};
        size_t lens[2] = {6, strlen(dbtext)};
        redisAppendCommandArgv(ctx, 2, argv, lens);
        reqs[nreq++] = REQ_SELECT;
    }
    for (int i = 0; load_scripts && i < KVI_REDIS_NSCRIPTS; i++) {
        if (rp->scripts[i].text == NULL)
            continue;
        const char *argv[3] = {"SCRIPT", "LOAD", rp->scripts[i].text};
        size_t lens[3] = {6, 4, strlen(rp->scripts[i].text)};
        redisAppendCommandArgv(ctx, 3, argv, lens);
        script_of[nreq] = &rp->scripts[i];
        reqs[nreq++] = REQ_SCRIPT;
        nscripts++;
    }
    kvi_status result = KVI_OK;
    int64_t deadline = kvi__redis_deadline_after(cfg->connect_timeout_ms);
    for (int i = 0; i < nreq; i++) {
        void *v = NULL;
        kvi_status s = kvi__redis_get_reply(c, a, ctx, deadline, 1, &v);
        if (s != KVI_OK)
            return s;
        redisReply *r = v;
        if (result == KVI_OK && r->type == REDIS_REPLY_ERROR) {
            result = setup_error(c, a, reqs[i], r);
        } else if (reqs[i] == REQ_SCRIPT && r->type == REDIS_REPLY_STRING && r->len == 40) {
            struct kvi_redis_script *sc = script_of[i];
            int expected = 0;
            if (atomic_compare_exchange_strong(&sc->sha_state, &expected, 1)) {
                memcpy(sc->sha, r->str, 41);
                atomic_store(&sc->sha_state, 2);
            }
            nloaded++;
        }
        freeReplyObject(r);
    }
    if (result == KVI_OK && nscripts > 0 && nloaded == nscripts)
        *scripts_loaded = 1;
    return result;
}

/* See transport.h. */
kvi_status kvi__redis_connect(kvi_conn *c, const struct kvi_redis_addr *a, int select_db,
                              int load_scripts, int *scripts_loaded, redisContext **out)
{
    const struct kvi_redis_cfg *cfg = &kvi__redis_priv(c)->cfg;
    redisContext *ctx;

    if (cfg->connect_timeout_ms > 0) {
        struct timeval tv = tv_ms(cfg->connect_timeout_ms);
        ctx = a->path != NULL ? redisConnectUnixWithTimeout(a->path, tv)
                              : redisConnectWithTimeout(a->host, a->port, tv);
    } else {
        ctx = a->path != NULL ? redisConnectUnix(a->path) : redisConnect(a->host, a->port);
    }
    int err_no = errno;
    if (ctx == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "connect to %s: out of memory", a->name);
    if (ctx->err != 0) {
        kvi_status st_err = kvi__redis_io_error(c, a->name, ctx, err_no, 1);
        redisFree(ctx);
        return st_err;
    }
    if (cfg->connect_timeout_ms > 0)
        redisSetTimeout(ctx, tv_ms(cfg->connect_timeout_ms));
    kvi_status s = conn_setup(c, a, ctx, select_db, load_scripts, scripts_loaded);
    if (s == KVI_OK && cfg->timeout_ms != cfg->connect_timeout_ms) {
        /* 0 = wait forever, as a zero timeval means to SO_RCVTIMEO. */
        if (redisSetTimeout(ctx, tv_ms(cfg->timeout_ms)) != REDIS_OK)
            s = kvi__redis_io_error(c, a->name, ctx, errno, 1);
    }
    /* Keepalive notices a peer that vanished without closing (TCP only:
     * on a unix socket the call fails and poisons the context). */
    if (s == KVI_OK && a->path == NULL && redisEnableKeepAlive(ctx) != REDIS_OK)
        s = kvi__redis_io_error(c, a->name, ctx, errno, 1);
    if (s != KVI_OK) {
        redisFree(ctx);
        return s;
    }
    *out = ctx;
    return KVI_OK;
}

/* See transport.h. */
kvi_status kvi__redis_roundtrip(kvi_conn *c, const struct kvi_redis_addr *a, redisContext *ctx,
                                const struct kvi_redis_cmd *cmd, int asking, int *answered,
                                redisReply **out)
{
    const struct kvi_redis_cfg *cfg = &kvi__redis_priv(c)->cfg;
    int wait = cmd->is_write && cfg->wait_replicas > 0;
    int64_t deadline = kvi__redis_deadline_after(cfg->timeout_ms);
    void *v = NULL;
    char nrep[16], wait_ms[16];

    if (wait && deadline > 0)
        deadline += cfg->wait_timeout_ms;
    if (asking)
        redisAppendCommand(ctx, "ASKING");
    if (redisAppendCommandArgv(ctx, cmd->argc, cmd->argv, cmd->lens) != REDIS_OK)
        return kvi__redis_io_error(c, a->name, ctx, errno, 0);
    if (wait) {
        /* In the same round trip: the server answers once the write has
         * reached that many replicas (or the WAIT timed out). */
        snprintf(nrep, sizeof nrep, "%u", cfg->wait_replicas);
        snprintf(wait_ms, sizeof wait_ms, "%u", (unsigned)cfg->wait_timeout_ms);
        const char *wargv[3] = {"WAIT", nrep, wait_ms};
        size_t wlens[3] = {4, strlen(nrep), strlen(wait_ms)};
        if (redisAppendCommandArgv(ctx, 3, wargv, wlens) != REDIS_OK)
            return kvi__redis_io_error(c, a->name, ctx, errno, 0);
    }
    if (asking) {
        kvi_status s = kvi__redis_get_reply(c, a, ctx, deadline, 0, &v);
        if (s != KVI_OK)
            return s;
        freeReplyObject(v);
        v = NULL;
    }
    kvi_status s;
    if (cmd->deep) {
        /* Written out first; then deep.c reads the reply. */
        int sent = 0;
        while (!sent) {
            if (redisBufferWrite(ctx, &sent) != REDIS_OK)
                return kvi__redis_io_error(c, a->name, ctx, errno, 0);
            if (!sent && wait_fd(ctx->fd, POLLOUT, deadline) == 0)
                return kvi__redis_timed_out(c, a->name, 0);
        }
        redisReply *dr = NULL;
        s = get_deep_reply(c, a, ctx, deadline, &dr);
        v = dr;
    } else {
        s = kvi__redis_get_reply(c, a, ctx, deadline, 0, &v);
    }
    if (s != KVI_OK)
        return s;
    *answered = 1;
    if (wait) {
        void *w = NULL;
        s = kvi__redis_get_reply(c, a, ctx, deadline, 0, &w);
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
                                    a->name, acked < 0 ? 0 : acked, cfg->wait_replicas,
                                    (unsigned)cfg->wait_timeout_ms);
        }
    }
    *out = v;
    return KVI_OK;
}
