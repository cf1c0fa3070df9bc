/*
 * raw.c -- raw queries of the redis engine (see raw.h).
 */
#include <limits.h>
#include <string.h>

#include "dispatch.h"
#include "error.h"
#include "nearcache.h"
#include "raw.h"
#include "route.h"

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

/* See raw.h. */
kvi_status kvi__redis_raw_reply(kvi_conn *c, redisReply *r, kvi_reply **out)
{
    *out = convert(r);
    freeReplyObject(r);
    return *out != NULL ? KVI_OK : kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
}

/* See raw.h. */
kvi_status kvi__redis_raw_words(kvi_conn *c, const char *query, size_t query_len, char ***words,
                                size_t **lens, size_t *count)
{
    kvi_status s = kvi_split_words(c, query, query_len, words, lens, count);
    if (s != KVI_OK)
        return s;
    if (*count == 0 || *count > INT_MAX)
        s = kvi_engine_error(c, KVI_E_INVALID, "raw query: no command");
    else if (kvi__redis_stateful_command(*count, *words, *lens))
        s = kvi_engine_error(c, KVI_E_INVALID,
                             "raw query: %.*s changes the connection's state, which pooled "
                             "connections cannot keep",
                             (int)((*lens)[0] > 32 ? 32 : (*lens)[0]), (*words)[0]);
    if (s != KVI_OK) {
        kvi_words_free(*words, *lens, *count);
        *words = NULL;
        *lens = NULL;
    }
    return s;
}

/* See raw.h. */
kvi_status kvi__redis_raw_query(kvi_conn *c, const char *query, size_t query_len, kvi_reply **out)
{
    char **words;
    size_t *lens, count;
    int is_cluster = 0;
    redisReply *hold = NULL;

    kvi_status s = kvi__redis_raw_words(c, query, query_len, &words, &lens, &count);
    if (s != KVI_OK) {
        kvi__redis_nc_drop_all(c);
        return s;
    }
    s = kvi__redis_is_cluster(c, &is_cluster);
    /* A raw reply is read at any depth; never resent (it may write). */
    struct kvi_redis_cmd cmd = {
        .argc = (int)count, .argv = (const char **)words, .lens = lens, .deep = 1};
    if (s == KVI_OK && is_cluster)
        s = raw_key(c, &cmd, words, &hold);
    if (s == KVI_OK) {
        redisReply *r = NULL;
        s = kvi__redis_exec(c, &cmd, &r);
        if (s == KVI_OK)
            s = kvi__redis_raw_reply(c, r, out);
    }
    freeReplyObject(hold);
    kvi_words_free(words, lens, count);
    /* A raw query may write any key. */
    kvi__redis_nc_drop_all(c);
    return s;
}
