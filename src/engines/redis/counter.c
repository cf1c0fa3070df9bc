/*
 * counter.c -- counters of the redis engine (see counter.h).
 */
#include <string.h>

#include "counter.h"
#include "dispatch.h"
#include "error.h"
#include "nearcache.h"
#include "scripts.h"
#include "values.h"

static kvi_status counter_error(kvi_conn *c, const redisReply *r)
{
    if (strstr(r->str, "would overflow") != NULL)
        return kvi_engine_error(c, KVI_E_OVERFLOW, "increment or decrement would overflow");
    /* Redis >= 7 passes a script's error code through; older servers
     * wrap it ("ERR Error running script ...: WRONGTYPE ..."). */
    if (strstr(r->str, "not an integer") != NULL || strstr(r->str, "WRONGTYPE") != NULL)
        return kvi_engine_error(c, KVI_E_NOT_A_COUNTER, "value is not an integer counter");
    return kvi__redis_reply_error(c, r);
}

/* Runs script id with KEYS[1] = key and ARGV = args[0..nargs): EVALSHA
 * when the SHA is known, EVAL when not or after NOSCRIPT.  Never resent:
 * the script may have run before the connection failed (the caller gets
 * TIMEOUT/CONNECT). */
static kvi_status run_script(kvi_conn *c, int id, const void *key, size_t key_len, int nargs,
                             const char *const *args, const size_t *arg_lens, redisReply **out)
{
    struct kvi_redis_scripts *sc = &kvi__redis_priv(c)->scripts;
    const char *argv[8] = {NULL, NULL, "1", key};
    size_t lens[8] = {0, 0, 1, key_len};
    redisReply *r = NULL;
    kvi_status s;

    for (int i = 0; i < nargs && i < 4; i++) {
        argv[4 + i] = args[i];
        lens[4 + i] = arg_lens[i];
    }
    if (kvi__redis_script_words(sc, id, 1, argv, lens)) {
        s = kvi__redis_run(c, 4 + nargs, argv, lens, 3, KVI_REDIS_WRITE, &r);
        if (s != KVI_OK)
            return s;
        if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) != 0) {
            *out = r;
            return KVI_OK;
        }
        freeReplyObject(r);
    }
    /* The server lost the script (restart, SCRIPT FLUSH) or we never had
     * its SHA: EVAL runs it and caches it again. */
    kvi__redis_script_words(sc, id, 0, argv, lens);
    return kvi__redis_run(c, 4 + nargs, argv, lens, 3, KVI_REDIS_WRITE, out);
}

/* run_script() of a counter script: KVI_OK with a reply that is not an
 * error; an error reply becomes its status (counter_error) and is freed. */
static kvi_status run_counter_script(kvi_conn *c, int id, const void *key, size_t key_len,
                                     int nargs, const char *const *args, const size_t *arg_lens,
                                     redisReply **out)
{
    redisReply *r = NULL;
    kvi_status s = run_script(c, id, key, key_len, nargs, args, arg_lens, &r);
    if (s != KVI_OK)
        return s;
    if (r->type == REDIS_REPLY_ERROR) {
        s = counter_error(c, r);
        freeReplyObject(r);
        return s;
    }
    *out = r;
    return KVI_OK;
}

/* See counter.h. */
kvi_status kvi__redis_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                          int64_t expire_s, int64_t *new_value)
{
    char dtext[24], etext[24];
    const char *args[2] = {dtext, etext};
    size_t lens[2] = {kvi_format_int64(delta, dtext), kvi_format_int64(expire_s, etext)};
    redisReply *r = NULL;

    kvi_status s = run_counter_script(c, KVI_REDIS_SCRIPT_ADD, key, key_len, 2, args, lens, &r);
    kvi__redis_nc_drop(c, key, key_len);
    if (s != KVI_OK)
        return s;
    if (r->type != REDIS_REPLY_STRING || !kvi_parse_int64(r->str, r->len, new_value))
        return kvi__redis_unexpected(c, r, "the counter script");
    freeReplyObject(r);
    return KVI_OK;
}

/* See counter.h. */
kvi_status kvi__redis_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                  int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    char text[4][24];
    const char *args[4] = {text[0], text[1], text[2], text[3]};
    size_t lens[4] = {kvi_format_int64(delta, text[0]), kvi_format_int64(expire_s, text[1]),
                      kvi_format_int64(min, text[2]), kvi_format_int64(max, text[3])};
    redisReply *r = NULL;

    kvi_status s =
        run_counter_script(c, KVI_REDIS_SCRIPT_ADD_BOUNDED, key, key_len, 4, args, lens, &r);
    kvi__redis_nc_drop(c, key, key_len);
    if (s != KVI_OK)
        return s;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING ||
        !kvi_parse_int64(r->element[1]->str, r->element[1]->len, value))
        return kvi__redis_unexpected(c, r, "the bounded counter script");
    s = r->element[0]->integer == 1 ? KVI_OK : KVI_OUT_OF_BOUNDS;
    freeReplyObject(r);
    return s;
}

/* See counter.h. */
kvi_status kvi__redis_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out)
{
    redisReply *r = NULL, *err = NULL;
    kvi_status s = kvi__redis_get_string(c, key, key_len, &r, &err);
    if (s != KVI_OK)
        return s;
    if (err != NULL) {
        /* WRONGTYPE: a list or hash is not a counter either. */
        s = counter_error(c, err);
        freeReplyObject(err);
        return s;
    }
    if (!kvi_parse_int64(r->str, r->len, out))
        s = kvi_engine_error(c, KVI_E_NOT_A_COUNTER, "value is not an integer counter");
    freeReplyObject(r);
    return s;
}

/* See counter.h. */
int kvi__redis_counter_argv(kvi_conn *c, int bounded, int allow_sha, const void *key,
                            size_t key_len, int64_t delta, int64_t expire_s, int64_t min,
                            int64_t max, char text[4][24], const char *argv[8], size_t lens[8])
{
    int nargs = bounded ? 4 : 2;
    kvi__redis_script_words(&kvi__redis_priv(c)->scripts,
                            bounded ? KVI_REDIS_SCRIPT_ADD_BOUNDED : KVI_REDIS_SCRIPT_ADD,
                            allow_sha, argv, lens);
    argv[2] = "1";
    lens[2] = 1;
    argv[3] = key;
    lens[3] = key_len;
    int64_t args[4] = {delta, expire_s, min, max};
    for (int i = 0; i < nargs; i++) {
        lens[4 + i] = kvi_format_int64(args[i], text[i]);
        argv[4 + i] = text[i];
    }
    return 4 + nargs;
}

/* See counter.h. */
kvi_status kvi__redis_counter_reply(kvi_conn *c, int bounded, redisReply *r, int64_t *value)
{
    kvi_status s;
    if (r->type == REDIS_REPLY_ERROR) {
        s = counter_error(c, r);
        freeReplyObject(r);
        return s;
    }
    if (!bounded) {
        if (r->type != REDIS_REPLY_STRING || !kvi_parse_int64(r->str, r->len, value))
            return kvi__redis_unexpected(c, r, "the counter script");
        freeReplyObject(r);
        return KVI_OK;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING ||
        !kvi_parse_int64(r->element[1]->str, r->element[1]->len, value))
        return kvi__redis_unexpected(c, r, "the bounded counter script");
    s = r->element[0]->integer == 1 ? KVI_OK : KVI_OUT_OF_BOUNDS;
    freeReplyObject(r);
    return s;
}

/* See counter.h. */
kvi_status kvi__redis_counter_get_reply(kvi_conn *c, redisReply *r, int64_t *out)
{
    kvi_status s = KVI_OK;
    if (r->type == REDIS_REPLY_NIL) {
        s = KVI_NOT_FOUND;
    } else if (r->type == REDIS_REPLY_ERROR) {
        s = counter_error(c, r); /* WRONGTYPE: a list or hash is not a counter either */
    } else if (r->type != REDIS_REPLY_STRING) {
        return kvi__redis_unexpected(c, r, "GET");
    } else if (!kvi_parse_int64(r->str, r->len, out)) {
        s = kvi_engine_error(c, KVI_E_NOT_A_COUNTER, "value is not an integer counter");
    }
    freeReplyObject(r);
    return s;
}
