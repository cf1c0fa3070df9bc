/*
 * error.c -- server error replies -> kvi statuses (see error.h).
 */
#include <string.h>

#include "error.h"

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
