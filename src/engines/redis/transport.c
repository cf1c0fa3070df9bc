/*
 * transport.c -- the engine's settings on a connection, scripts, round
 * trips (see transport.h).
 */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "transport.h"

/* See transport.h. */
int64_t kvi__redis_deadline_after(uint32_t ms)
{
    return ms > 0 ? kvi_monotonic_ms() + ms : 0;
}

/* The connection's failure as the call's status and message (scrubbed of
 * the password by kvi_engine_error). */
static kvi_status conn_error(kvi_conn *c, const struct kvi_redis_conn *conn)
{
    return kvi_engine_error(c, conn->st, "%s", conn->err);
}

/* See transport.h. */
void kvi__redis_conn_cfg(const struct kvi_redis_node_cfg *cfg, const struct kvi_redis_addr *a,
                         struct kvi_redis_tls_cache *tc, int role, struct kvi_redis_conn_cfg *out)
{
    /* The URL's names were resolved when it was defined; a name learned
     * later (from sentinels or a cluster) is looked up in the background
     * and kept (resolve.h).  An IP address is parsed, never looked up.
     * Until a name is resolved addrs is NULL and resolve_err says why,
     * which the connect reports at once (the callers' retries try again). */
    char why[160] = "";
    const struct kvi_redis_addrlist *addrs =
        a->host != NULL ? kvi__redis_names_get(cfg->names, a->host, why, sizeof why) : NULL;
    *out = (struct kvi_redis_conn_cfg){
        .host = a->host,
        .port = a->port,
        .addrs = addrs,
        .path = a->path,
        .name = a->name,
        .tls = cfg->tls,
        .tls_cache = tc,
        .user = role == KVI_REDIS_ROLE_SENTINEL ? cfg->sentinel_user : cfg->user,
        .password = role == KVI_REDIS_ROLE_SENTINEL ? cfg->sentinel_password : cfg->password,
        .db = role == KVI_REDIS_ROLE_DATA ? cfg->db : 0,
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .timeout_ms = cfg->timeout_ms,
    };
    if (addrs == NULL && cfg->names != NULL)
        snprintf(out->resolve_err, sizeof out->resolve_err, "%s", why);
}

/* See transport.h. */
kvi_status kvi__redis_connect(kvi_conn *c, const struct kvi_redis_node_cfg *cfg,
                              const struct kvi_redis_addr *a, struct kvi_redis_tls_cache *tc,
                              int role, int load, int *scripts_loaded, struct kvi_redis_conn *conn)
{
    struct kvi_redis_conn_cfg cc;
    int64_t deadline = kvi__redis_deadline_after(cfg->connect_timeout_ms);

    /* A blocking connect may wait for a name learned at run time, within
     * its connect_timeout like the connect itself (the non-blocking paths
     * never do). */
    if (a->host != NULL)
        kvi__redis_names_wait(cfg->names, a->host, deadline);
    kvi__redis_conn_cfg(cfg, a, tc, role, &cc);
    kvi_status s = kvi__redis_conn_open(conn, &cc, deadline);
    if (s != KVI_OK)
        s = conn_error(c, conn);
    else if (kvi__redis_tls_resumed(&conn->sock))
        kvi_engine_log(c, KVI_LOG_DEBUG, "connected to %s, TLS session resumed", a->name);
    if (s == KVI_OK && load && cfg->scripts != NULL)
        s = kvi__redis_scripts_load(c, cfg->scripts, conn,
                                    kvi__redis_deadline_after(cfg->connect_timeout_ms),
                                    scripts_loaded);
    if (s != KVI_OK)
        kvi__redis_conn_close(conn);
    return s;
}

/* See transport.h. */
kvi_status kvi__redis_get_reply(kvi_conn *c, struct kvi_redis_conn *conn, int64_t deadline,
                                redisReply **out)
{
    if (kvi__redis_conn_reply(conn, deadline, out) != KVI_OK)
        return conn_error(c, conn);
    return KVI_OK;
}

/* See transport.h. */
kvi_status kvi__redis_append(kvi_conn *c, struct kvi_redis_conn *conn,
                             const struct kvi_redis_cmd *cmd)
{
    if (kvi__redis_conn_append(conn, cmd->argc, cmd->argv, cmd->lens) != 0)
        return conn_error(c, conn);
    return KVI_OK;
}

/* See transport.h. */
kvi_status kvi__redis_roundtrip(kvi_conn *c, const struct kvi_redis_node_cfg *cfg,
                                struct kvi_redis_conn *conn, const struct kvi_redis_cmd *cmd,
                                int asking, int *answered, redisReply **out)
{
    int wait = cmd->is_write && cfg->wait_replicas > 0;
    int64_t deadline = kvi__redis_deadline_after(cfg->timeout_ms);
    redisReply *v = NULL;
    char nrep[16], wait_ms[16];
    kvi_status s;

    if (wait && deadline > 0)
        deadline += cfg->wait_timeout_ms;
    if (asking) {
        const char *argv[1] = {"ASKING"};
        size_t lens[1] = {6};
        if (kvi__redis_conn_append(conn, 1, argv, lens) != 0)
            return conn_error(c, conn);
        if (cmd->deep) {
            /* deep.c reads straight from the socket: nothing may wait in
             * hiredis's reader, so ASKING's reply is read first. */
            if ((s = kvi__redis_get_reply(c, conn, deadline, &v)) != KVI_OK)
                return s;
            freeReplyObject(v);
            v = NULL;
            asking = 0;
        }
    }
    if ((s = kvi__redis_append(c, conn, cmd)) != KVI_OK)
        return s;
    if (wait) {
        /* In the same round trip: the server answers once the write has
         * reached that many replicas (or the WAIT timed out). */
        snprintf(nrep, sizeof nrep, "%u", cfg->wait_replicas);
        snprintf(wait_ms, sizeof wait_ms, "%u", (unsigned)cfg->wait_timeout_ms);
        const char *wargv[3] = {"WAIT", nrep, wait_ms};
        size_t wlens[3] = {4, strlen(nrep), strlen(wait_ms)};
        if (kvi__redis_conn_append(conn, 3, wargv, wlens) != 0)
            return conn_error(c, conn);
    }
    if (asking) {
        if ((s = kvi__redis_get_reply(c, conn, deadline, &v)) != KVI_OK)
            return s;
        freeReplyObject(v);
        v = NULL;
    }
    if (cmd->deep)
        s = kvi__redis_conn_reply_deep(conn, deadline, &v) == KVI_OK ? KVI_OK : conn_error(c, conn);
    else
        s = kvi__redis_get_reply(c, conn, deadline, &v);
    if (s != KVI_OK)
        return s;
    *answered = 1;
    if (wait) {
        redisReply *w = NULL;
        s = kvi__redis_get_reply(c, conn, deadline, &w);
        if (s != KVI_OK) {
            freeReplyObject(v);
            return s;
        }
        long long acked = w->type == REDIS_REPLY_INTEGER ? w->integer : -1;
        freeReplyObject(w);
        if (v->type != REDIS_REPLY_ERROR && acked < (long long)cfg->wait_replicas) {
            /* Applied on the master, but a failover could still lose it:
             * not an acknowledged write. */
            freeReplyObject(v);
            return kvi_engine_error(c, KVI_E_TIMEOUT,
                                    "write applied on %s but confirmed by %lld of %u replicas "
                                    "within %u ms; it may be lost in a failover",
                                    conn->cfg.name, acked < 0 ? 0 : acked, cfg->wait_replicas,
                                    (unsigned)cfg->wait_timeout_ms);
        }
    }
    *out = v;
    return KVI_OK;
}
