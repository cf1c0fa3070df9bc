/*
 * values.c -- the single-key commands of the redis engine: SET, SET NX,
 * GET, DEL, PTTL (see values.h).
 */
#include <string.h>

#include "dispatch.h"
#include "error.h"
#include "nearcache.h"
#include "values.h"

/* See values.h. */
kvi_status kvi__redis_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                            size_t val_len, int64_t expire_s)
{
    char ex[24];
    const char *argv[5] = {"SET", key, val, "EX", ex};
    size_t lens[5] = {3, key_len, val_len, 2, 0};
    redisReply *r;

    /* Without EX, SET also removes an earlier TTL. */
    if (expire_s > 0)
        lens[4] = kvi_format_int64(expire_s, ex);
    kvi_status s = kvi__redis_run(c, expire_s > 0 ? 5 : 3, argv, lens, 1,
                                  KVI_REDIS_RESEND_OK | KVI_REDIS_WRITE, &r);
    kvi__redis_nc_drop(c, key, key_len);
    if (s != KVI_OK)
        return s;
    if (r->type != REDIS_REPLY_STATUS)
        return kvi__redis_unexpected(c, r, "SET");
    freeReplyObject(r);
    return KVI_OK;
}

/* See values.h.  Not resent: a second SET after a lost reply would
 * report KEY_EXISTS for our own write. */
kvi_status kvi__redis_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
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

/* See values.h. */
kvi_status kvi__redis_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
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
    /* With client_cache the stats count hits (found at the server here). */
    kvi__redis_nc_found(c);
    return s;
}

/* kvi__redis_run() of the two words "cmd key". */
static kvi_status run_key(kvi_conn *c, const char *cmd, const void *key, size_t key_len, int flags,
                          redisReply **out)
{
    const char *argv[2] = {cmd, key};
    size_t lens[2] = {strlen(cmd), key_len};
    return kvi__redis_run(c, 2, argv, lens, 1, flags, out);
}

/* run_key() of a command that answers an integer: KVI_OK with
 * it in *v. */
static kvi_status run_key_integer(kvi_conn *c, const char *cmd, const void *key, size_t key_len,
                                  int flags, long long *v)
{
    redisReply *r;
    kvi_status s = run_key(c, cmd, key, key_len, flags, &r);
    if (s != KVI_OK)
        return s;
    if (r->type != REDIS_REPLY_INTEGER)
        return kvi__redis_unexpected(c, r, cmd);
    *v = r->integer;
    freeReplyObject(r);
    return KVI_OK;
}

/* See values.h. */
kvi_status kvi__redis_remove(kvi_conn *c, const void *key, size_t key_len)
{
    long long n = 0;
    /* Not resent: a second DEL would report NOT_FOUND for a removed key. */
    kvi_status s = run_key_integer(c, "DEL", key, key_len, KVI_REDIS_WRITE, &n);
    kvi__redis_nc_drop(c, key, key_len);
    if (s != KVI_OK)
        return s;
    return n > 0 ? KVI_OK : KVI_NOT_FOUND;
}

/* See values.h. */
kvi_status kvi__redis_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
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

/* See values.h. */
kvi_status kvi__redis_get_string(kvi_conn *c, const void *key, size_t key_len, redisReply **out,
                                 redisReply **err)
{
    redisReply *r;
    kvi_status s = run_key(c, "GET", key, key_len, KVI_REDIS_RESEND_OK, &r);
    if (s != KVI_OK)
        return s;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return KVI_NOT_FOUND;
    }
    if (r->type == REDIS_REPLY_ERROR && err != NULL) {
        *err = r;
        return KVI_OK;
    }
    if (r->type != REDIS_REPLY_STRING)
        return kvi__redis_unexpected(c, r, "GET");
    *out = r;
    return KVI_OK;
}
