/*
 * scan.c -- the redis engine's operations on every master: keys and
 * removal by glob (SCAN), ping (see scan.h).
 */
#include <string.h>

#include "dispatch.h"
#include "error.h"
#include "nearcache.h"
#include "route.h"
#include "scan.h"

/* Keys asked for per SCAN step. */
#define SCAN_COUNT "1000"

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
            struct kvi_redis_cmd cmd = {.argc = 6, .argv = argv, .lens = lens, .resend_ok = 1};
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

/* See scan.h. */
kvi_status kvi__redis_keys(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out)
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
    int waits = kvi__redis_priv(c)->node_cfg.wait_replicas > 0;
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
    struct kvi_redis_cmd cmd = {.argc = (int)n + 1, .argv = argv, .lens = lens, .is_write = 1};
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

/* See scan.h. */
kvi_status kvi__redis_remove_chunk(kvi_conn *c, const char *glob, size_t glob_len,
                                   uint64_t *removed)
{
    uint64_t n = 0;
    kvi_status s = scan_all(c, glob, glob_len, remove_page, &n);
    kvi__redis_nc_drop_all(c);
    /* Keys removed before a failure stay removed: report them anyway. */
    *removed = n;
    return s;
}

/* See scan.h. */
kvi_status kvi__redis_ping(kvi_conn *c)
{
    struct kvi_redis_node **nodes = NULL;
    size_t count = 0;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    struct kvi_redis_cmd cmd = {.argc = 1, .argv = argv, .lens = lens, .resend_ok = 1};

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
