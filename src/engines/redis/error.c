/*
 * error.c -- hiredis and server errors -> kvi statuses (see error.h).
 */
#include <errno.h>
#include <string.h>

#include "error.h"

/* See error.h. */
kvi_status kvi__redis_timed_out(kvi_conn *c, const char *name, int connecting)
{
    const struct kvi_redis_cfg *cfg = &kvi__redis_priv(c)->cfg;
    uint32_t ms = connecting ? cfg->connect_timeout_ms : cfg->timeout_ms;
    return kvi_engine_error(c, KVI_E_TIMEOUT, "%s %s: timed out after %u ms",
                            connecting ? "connect to" : "request to", name, (unsigned)ms);
}

/* See error.h. */
kvi_status kvi__redis_io_error(kvi_conn *c, const char *name, const redisContext *ctx, int err_no,
                               int connecting)
{
    kvi_status st;

    switch (ctx->err) {
    case REDIS_ERR_IO:
        if (err_no == EAGAIN || err_no == EWOULDBLOCK || err_no == ETIMEDOUT ||
            strstr(ctx->errstr, "timed out") != NULL ||
            strstr(ctx->errstr, "temporarily unavailable") != NULL)
            return kvi__redis_timed_out(c, name, connecting);
        st = connecting || err_no == ECONNRESET || err_no == EPIPE || err_no == ENOTCONN ||
                     err_no == ECONNREFUSED
                 ? KVI_E_CONNECT
                 : KVI_E_IO;
        break;
    case REDIS_ERR_EOF:
        st = KVI_E_CONNECT;
        break;
    case REDIS_ERR_PROTOCOL:
        if (strstr(ctx->errstr, "nested multi bulk") != NULL)
            /* hiredis 0.14's reader has a fixed stack of 9 tasks (replies
             * nest at most 7 levels); 1.0 and later grow it. */
            return kvi_engine_error(c, KVI_E_PROTOCOL,
                                    "reply from %s nests deeper than the 7 levels hiredis %d.%d "
                                    "can read; ask for less (e.g. COMMAND DOCS with command "
                                    "names) or build the engine against hiredis >= 1.0",
                                    name, HIREDIS_MAJOR, HIREDIS_MINOR);
        st = KVI_E_PROTOCOL;
        break;
    case REDIS_ERR_OOM:
        st = KVI_E_NOMEM;
        break;
    default:
        st = connecting ? KVI_E_CONNECT : KVI_E_IO;
        break;
    }
    return kvi_engine_error(c, st, "%s %s: %s", connecting ? "connect to" : "request to", name,
                            ctx->errstr);
}

/* See error.h. */
int kvi__redis_starts_with(const char *s, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    return len >= pl && memcmp(s, prefix, pl) == 0;
}

/* See error.h. */
int kvi__redis_is_auth_error(const redisReply *r)
{
    return kvi__redis_starts_with(r->str, r->len, "NOAUTH") ||
           kvi__redis_starts_with(r->str, r->len, "WRONGPASS") ||
           kvi__redis_starts_with(r->str, r->len, "NOPERM") || strstr(r->str, "invalid password") ||
           strstr(r->str, "invalid username-password") ||
           strstr(r->str, "without any password configured");
}

/* See error.h. */
int kvi__redis_is_error_kind(const redisReply *r, const char *kind)
{
    return r->type == REDIS_REPLY_ERROR && kvi__redis_starts_with(r->str, r->len, kind) &&
           (r->len == strlen(kind) || r->str[strlen(kind)] == ' ');
}

/* See error.h. */
kvi_status kvi__redis_reply_error(kvi_conn *c, const redisReply *r)
{
    /* Passed as it is: kvi_engine_error scrubs the password. */
    const char *msg = r->str != NULL ? r->str : "";

    if (kvi__redis_is_auth_error(r))
        return kvi_engine_error(c, KVI_E_AUTH, "authentication failed: %s", msg);
    if (kvi__redis_starts_with(r->str, r->len, "OOM"))
        return kvi_engine_error(c, KVI_E_STORE_FULL, "%s", msg);
    return kvi_engine_error(c, KVI_E_BACKEND, "%s", msg);
}

/* See error.h. */
kvi_status kvi__redis_unexpected(kvi_conn *c, redisReply *r, const char *cmd)
{
    kvi_status s =
        r->type == REDIS_REPLY_ERROR
            ? kvi__redis_reply_error(c, r)
            : kvi_engine_error(c, KVI_E_PROTOCOL, "unexpected reply type %d to %s", r->type, cmd);
    freeReplyObject(r);
    return s;
}
