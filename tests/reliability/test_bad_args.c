/*
 * test_bad_args.c -- every public function of include/kvi/kvi.h given NULL,
 * empty and oversized arguments, from one table: each call must return
 * KVI_E_INVALID (or the one status the contract names for that input),
 * leave its out-parameters empty, never reach the engine and write
 * nothing: afterwards the store holds no key at all and the engine counted
 * no operation, only rejections.  Functions without a status (accessors,
 * free functions, setters) must accept NULL without crashing.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "testclock.h"

#define ID "local:bad"

static kvi *g_k;
static kvi_conn *g_c;
static char g_long_key[KVI_MAX_KEY_LEN + 1];
static char g_long_id[KVI_MAX_ID_LEN + 2];
static char g_small[16] = "small buffer";

/* Out-parameters, filled with junk before each call. */
static kvi_value g_val;
static kvi_reply *g_reply;
static int64_t g_int;
static uint64_t g_u64;
static kvi_stats g_stats;
static kvi_conn *g_conn_out;
static kvi *g_ctx_out;
static kvi_url *g_url_out;

static void junk_outputs(void)
{
    g_val.data = (char *)0x1;
    g_val.len = 77;
    g_reply = (kvi_reply *)0x1;
    g_int = 77;
    g_u64 = 77;
    memset(&g_stats, 0x77, sizeof g_stats);
    g_conn_out = (kvi_conn *)0x1;
    g_ctx_out = (kvi *)0x1;
    g_url_out = (kvi_url *)0x1;
}

enum out { O_NONE, O_VAL, O_REPLY, O_INT, O_CONN, O_CTX, O_URL, O_STATS };

struct row {
    const char *what;
    kvi_status want;
    kvi_status want2; /* also acceptable (e.g. BAD_URL for a URL), else = want */
    enum out out;     /* out-parameter the call was given, to check it is empty */
    kvi_status (*call)(void);
};

#define CALL(name, expr)                                                                           \
    static kvi_status name(void)                                                                   \
    {                                                                                              \
        return expr;                                                                               \
    }

/* ---- context and configuration ---- */
static const kvi_allocator no_fns = {NULL, NULL, NULL, NULL};
CALL(new_null, kvi_new(NULL))
CALL(new_alloc_null_out, kvi_new_with_allocator(NULL, &no_fns))
CALL(new_alloc_null_alloc, kvi_new_with_allocator(&g_ctx_out, NULL))
CALL(new_alloc_no_fns, kvi_new_with_allocator(&g_ctx_out, &no_fns))
CALL(add_url_null_k, kvi_add_url(NULL, "local:x://"))
CALL(add_url_null, kvi_add_url(g_k, NULL))
CALL(add_url_empty, kvi_add_url(g_k, ""))
static char *g_huge_url;
CALL(add_url_huge, kvi_add_url(g_k, g_huge_url))
CALL(load_config_null_k, kvi_load_config(NULL, "/dev/null"))
CALL(load_config_null, kvi_load_config(g_k, NULL))
CALL(load_config_empty, kvi_load_config(g_k, ""))
CALL(module_path_null_k, kvi_set_module_path(NULL, "/tmp"))
CALL(module_path_null, kvi_set_module_path(g_k, NULL))
CALL(conn_get_null_k, kvi_conn_get(NULL, ID, &g_conn_out))
CALL(conn_get_null_id, kvi_conn_get(g_k, NULL, &g_conn_out))
CALL(conn_get_empty_id, kvi_conn_get(g_k, "", &g_conn_out))
CALL(conn_get_long_id, kvi_conn_get(g_k, g_long_id, &g_conn_out))
CALL(conn_get_null_out, kvi_conn_get(g_k, ID, NULL))
CALL(conn_get_unknown, kvi_conn_get(g_k, "local:nosuch", &g_conn_out))
static void each(void *ud, kvi_conn *c)
{
    (void)ud;
    (void)c;
}
CALL(foreach_null_k, kvi_foreach_conn(NULL, each, NULL))
CALL(foreach_null_fn, kvi_foreach_conn(g_k, NULL, NULL))
CALL(url_parse_null, kvi_url_parse(NULL, &g_url_out, NULL, 0))
CALL(url_parse_null_out, kvi_url_parse("local://", NULL, NULL, 0))

/* ---- store ---- */
CALL(store_null_k, kvi_store(NULL, ID, "k", 1, "v", 1, 0))
CALL(store_null_id, kvi_store(g_k, NULL, "k", 1, "v", 1, 0))
CALL(store_empty_id, kvi_store(g_k, "", "k", 1, "v", 1, 0))
CALL(store_long_id, kvi_store(g_k, g_long_id, "k", 1, "v", 1, 0))
CALL(store_unknown_id, kvi_store(g_k, "local:nosuch", "k", 1, "v", 1, 0))
CALL(store_null_key, kvi_store(g_k, ID, NULL, 1, "v", 1, 0))
CALL(store_empty_key, kvi_store(g_k, ID, "k", 0, "v", 1, 0))
CALL(store_long_key, kvi_store(g_k, ID, g_long_key, sizeof g_long_key, "v", 1, 0))
CALL(store_null_val, kvi_store(g_k, ID, "k", 1, NULL, 1, 0))
/* The length is checked before the bytes are touched: a small buffer with
 * a huge length must not be read. */
CALL(store_huge_val, kvi_store(g_k, ID, "k", 1, g_small, (size_t)KVI_MAX_VALUE_LEN + 1, 0))
CALL(store_neg_expire, kvi_store(g_k, ID, "k", 1, "v", 1, -1))
CALL(store_huge_expire, kvi_store(g_k, ID, "k", 1, "v", 1, KVI_MAX_EXPIRE_S + 1))
CALL(store_min_expire, kvi_store(g_k, ID, "k", 1, "v", 1, INT64_MIN))
CALL(cstore_null_c, kvi_conn_store(NULL, "k", 1, "v", 1, 0))
CALL(cstore_null_key, kvi_conn_store(g_c, NULL, 1, "v", 1, 0))
CALL(cstore_long_key, kvi_conn_store(g_c, g_long_key, sizeof g_long_key, "v", 1, 0))
CALL(cstore_neg_expire, kvi_conn_store(g_c, "k", 1, "v", 1, -5))

/* ---- fetch / remove ---- */
CALL(fetch_null_k, kvi_fetch(NULL, ID, "k", 1, &g_val))
CALL(fetch_null_id, kvi_fetch(g_k, NULL, "k", 1, &g_val))
CALL(fetch_null_key, kvi_fetch(g_k, ID, NULL, 1, &g_val))
CALL(fetch_empty_key, kvi_fetch(g_k, ID, "k", 0, &g_val))
CALL(fetch_long_key, kvi_fetch(g_k, ID, g_long_key, sizeof g_long_key, &g_val))
CALL(fetch_null_out, kvi_fetch(g_k, ID, "k", 1, NULL))
CALL(cfetch_null_c, kvi_conn_fetch(NULL, "k", 1, &g_val))
CALL(cfetch_null_out, kvi_conn_fetch(g_c, "k", 1, NULL))
CALL(remove_null_k, kvi_remove(NULL, ID, "k", 1))
CALL(remove_null_id, kvi_remove(g_k, NULL, "k", 1))
CALL(remove_null_key, kvi_remove(g_k, ID, NULL, 1))
CALL(remove_empty_key, kvi_remove(g_k, ID, "k", 0))
CALL(remove_long_key, kvi_remove(g_k, ID, g_long_key, sizeof g_long_key))
CALL(cremove_null_c, kvi_conn_remove(NULL, "k", 1))

/* ---- counters ---- */
CALL(add_null_k, kvi_add(NULL, ID, "c", 1, 1, 0, &g_int))
CALL(add_null_id, kvi_add(g_k, NULL, "c", 1, 1, 0, &g_int))
CALL(add_null_key, kvi_add(g_k, ID, NULL, 1, 1, 0, &g_int))
CALL(add_empty_key, kvi_add(g_k, ID, "c", 0, 1, 0, &g_int))
CALL(add_long_key, kvi_add(g_k, ID, g_long_key, sizeof g_long_key, 1, 0, &g_int))
CALL(add_neg_expire, kvi_add(g_k, ID, "c", 1, 1, -1, &g_int))
CALL(add_huge_expire, kvi_add(g_k, ID, "c", 1, 1, KVI_MAX_EXPIRE_S + 1, &g_int))
CALL(cadd_null_c, kvi_conn_add(NULL, "c", 1, 1, 0, &g_int))
CALL(sub_null_k, kvi_sub(NULL, ID, "c", 1, 1, 0, &g_int))
CALL(sub_int64_min, kvi_sub(g_k, ID, "c", 1, INT64_MIN, 0, &g_int))
CALL(sub_neg_expire, kvi_sub(g_k, ID, "c", 1, 1, -1, &g_int))
CALL(sub_empty_key, kvi_sub(g_k, ID, "c", 0, 1, 0, &g_int))
CALL(csub_null_c, kvi_conn_sub(NULL, "c", 1, 1, 0, &g_int))
CALL(csub_int64_min, kvi_conn_sub(g_c, "c", 1, INT64_MIN, 0, &g_int))
CALL(counter_null_k, kvi_counter_fetch(NULL, ID, "c", 1, &g_int))
CALL(counter_null_key, kvi_counter_fetch(g_k, ID, NULL, 1, &g_int))
CALL(counter_long_key, kvi_counter_fetch(g_k, ID, g_long_key, sizeof g_long_key, &g_int))
CALL(counter_null_out, kvi_counter_fetch(g_k, ID, "c", 1, NULL))
CALL(ccounter_null_c, kvi_conn_counter_fetch(NULL, "c", 1, &g_int))
CALL(addb_null_k, kvi_add_bounded(NULL, ID, "c", 1, 1, 0, 0, 9, &g_int))
CALL(addb_min_gt_max, kvi_add_bounded(g_k, ID, "c", 1, 1, 0, 9, 0, &g_int))
CALL(addb_empty_key, kvi_add_bounded(g_k, ID, "c", 0, 1, 0, 0, 9, &g_int))
CALL(addb_neg_expire, kvi_add_bounded(g_k, ID, "c", 1, 1, -1, 0, 9, &g_int))
CALL(caddb_null_c, kvi_conn_add_bounded(NULL, "c", 1, 1, 0, 0, 9, &g_int))
CALL(subb_int64_min, kvi_sub_bounded(g_k, ID, "c", 1, INT64_MIN, 0, INT64_MIN, 0, &g_int))
CALL(csubb_min_gt_max, kvi_conn_sub_bounded(g_c, "c", 1, 1, 0, 1, -1, &g_int))
CALL(nx_null_k, kvi_store_nx(NULL, ID, "k", 1, "v", 1, 0))
CALL(nx_null_key, kvi_store_nx(g_k, ID, NULL, 1, "v", 1, 0))
CALL(nx_null_val, kvi_store_nx(g_k, ID, "k", 1, NULL, 1, 0))
CALL(nx_neg_expire, kvi_store_nx(g_k, ID, "k", 1, "v", 1, -1))
CALL(cnx_null_c, kvi_conn_store_nx(NULL, "k", 1, "v", 1, 0))
CALL(cnx_long_key, kvi_conn_store_nx(g_c, g_long_key, sizeof g_long_key, "v", 1, 0))

/* ---- raw, keys, remove_chunk, ttl, ping, stats ---- */
CALL(raw_null_k, kvi_raw_query(NULL, ID, "PING", 4, &g_reply))
CALL(raw_null_id, kvi_raw_query(g_k, NULL, "PING", 4, &g_reply))
CALL(raw_null_query, kvi_raw_query(g_k, ID, NULL, 4, &g_reply))
CALL(raw_empty_query, kvi_raw_query(g_k, ID, "PING", 0, &g_reply))
CALL(raw_huge_query, kvi_raw_query(g_k, ID, g_small, (size_t)KVI_MAX_QUERY_LEN + 1, &g_reply))
CALL(raw_null_out, kvi_raw_query(g_k, ID, "PING", 4, NULL))
CALL(craw_null_c, kvi_conn_raw_query(NULL, "PING", 4, &g_reply))
CALL(keys_null_k, kvi_keys(NULL, ID, "*", 1, &g_reply))
CALL(keys_null_id, kvi_keys(g_k, NULL, "*", 1, &g_reply))
CALL(keys_null_glob_len, kvi_keys(g_k, ID, NULL, 3, &g_reply))
CALL(keys_null_out, kvi_keys(g_k, ID, "*", 1, NULL))
CALL(keys_huge_glob, kvi_keys(g_k, ID, g_small, (size_t)KVI_MAX_QUERY_LEN + 1, &g_reply))
CALL(ckeys_null_c, kvi_conn_keys(NULL, "*", 1, &g_reply))
CALL(rglob_null_k, kvi_remove_chunk(NULL, ID, "*", 1, &g_u64))
CALL(rglob_empty, kvi_remove_chunk(g_k, ID, "", 0, &g_u64))
CALL(rglob_null_glob, kvi_remove_chunk(g_k, ID, NULL, 0, &g_u64))
CALL(rglob_huge, kvi_remove_chunk(g_k, ID, g_small, (size_t)KVI_MAX_QUERY_LEN + 1, &g_u64))
CALL(crglob_null_c, kvi_conn_remove_chunk(NULL, "*", 1, &g_u64))
CALL(crglob_empty, kvi_conn_remove_chunk(g_c, "", 0, &g_u64))
CALL(ttl_null_k, kvi_ttl(NULL, ID, "k", 1, &g_int))
CALL(ttl_null_key, kvi_ttl(g_k, ID, NULL, 1, &g_int))
CALL(ttl_empty_key, kvi_ttl(g_k, ID, "k", 0, &g_int))
CALL(ttl_null_out, kvi_ttl(g_k, ID, "k", 1, NULL))
CALL(cttl_null_c, kvi_conn_ttl(NULL, "k", 1, &g_int))
CALL(ping_null_k, kvi_ping(NULL, ID))
CALL(ping_null_id, kvi_ping(g_k, NULL))
CALL(ping_empty_id, kvi_ping(g_k, ""))
CALL(cping_null_c, kvi_conn_ping(NULL))
CALL(stats_null_k, kvi_stats_get(NULL, ID, &g_stats))
CALL(stats_null_id, kvi_stats_get(g_k, NULL, &g_stats))
CALL(stats_null_out, kvi_stats_get(g_k, ID, NULL))
CALL(cstats_null_c, kvi_conn_stats(NULL, &g_stats))
CALL(cstats_null_out, kvi_conn_stats(g_c, NULL))

#define R(fn, want, out)                                                                           \
    {                                                                                              \
#fn, KVI_##want, KVI_##want, out, fn                                                       \
    }
#define R2(fn, want, want2, out)                                                                   \
    {                                                                                              \
#fn, KVI_##want, KVI_##want2, out, fn                                                      \
    }

static const struct row rows[] = {
    R(new_null, E_INVALID, O_NONE),
    R(new_alloc_null_out, E_INVALID, O_NONE),
    R(new_alloc_null_alloc, E_INVALID, O_CTX),
    R(new_alloc_no_fns, E_INVALID, O_CTX),
    R(add_url_null_k, E_INVALID, O_NONE),
    R(add_url_null, E_INVALID, O_NONE),
    R2(add_url_empty, E_BAD_URL, E_INVALID, O_NONE),
    R2(add_url_huge, E_BAD_URL, E_INVALID, O_NONE),
    R(load_config_null_k, E_INVALID, O_NONE),
    R(load_config_null, E_INVALID, O_NONE),
    R2(load_config_empty, E_INVALID, E_IO, O_NONE),
    R(module_path_null_k, E_INVALID, O_NONE),
    R(module_path_null, E_INVALID, O_NONE),
    R(conn_get_null_k, E_INVALID, O_CONN),
    R(conn_get_null_id, E_INVALID, O_CONN),
    R(conn_get_empty_id, E_INVALID, O_CONN),
    R(conn_get_long_id, E_INVALID, O_CONN),
    R(conn_get_null_out, E_INVALID, O_NONE),
    R(conn_get_unknown, E_UNKNOWN_ENGINE, O_CONN),
    R(foreach_null_k, E_INVALID, O_NONE),
    R(foreach_null_fn, E_INVALID, O_NONE),
    R2(url_parse_null, E_INVALID, E_BAD_URL, O_URL),
    R(url_parse_null_out, E_INVALID, O_NONE),
    R(store_null_k, E_INVALID, O_NONE),
    R(store_null_id, E_INVALID, O_NONE),
    R(store_empty_id, E_INVALID, O_NONE),
    R(store_long_id, E_INVALID, O_NONE),
    R(store_unknown_id, E_UNKNOWN_ENGINE, O_NONE),
    R(store_null_key, E_INVALID, O_NONE),
    R(store_empty_key, E_INVALID, O_NONE),
    R(store_long_key, E_INVALID, O_NONE),
    R(store_null_val, E_INVALID, O_NONE),
    R(store_huge_val, E_INVALID, O_NONE),
    R(store_neg_expire, E_INVALID, O_NONE),
    R(store_huge_expire, E_INVALID, O_NONE),
    R(store_min_expire, E_INVALID, O_NONE),
    R(cstore_null_c, E_INVALID, O_NONE),
    R(cstore_null_key, E_INVALID, O_NONE),
    R(cstore_long_key, E_INVALID, O_NONE),
    R(cstore_neg_expire, E_INVALID, O_NONE),
    R(fetch_null_k, E_INVALID, O_VAL),
    R(fetch_null_id, E_INVALID, O_VAL),
    R(fetch_null_key, E_INVALID, O_VAL),
    R(fetch_empty_key, E_INVALID, O_VAL),
    R(fetch_long_key, E_INVALID, O_VAL),
    R(fetch_null_out, E_INVALID, O_NONE),
    R(cfetch_null_c, E_INVALID, O_VAL),
    R(cfetch_null_out, E_INVALID, O_NONE),
    R(remove_null_k, E_INVALID, O_NONE),
    R(remove_null_id, E_INVALID, O_NONE),
    R(remove_null_key, E_INVALID, O_NONE),
    R(remove_empty_key, E_INVALID, O_NONE),
    R(remove_long_key, E_INVALID, O_NONE),
    R(cremove_null_c, E_INVALID, O_NONE),
    R(add_null_k, E_INVALID, O_INT),
    R(add_null_id, E_INVALID, O_INT),
    R(add_null_key, E_INVALID, O_INT),
    R(add_empty_key, E_INVALID, O_INT),
    R(add_long_key, E_INVALID, O_INT),
    R(add_neg_expire, E_INVALID, O_INT),
    R(add_huge_expire, E_INVALID, O_INT),
    R(cadd_null_c, E_INVALID, O_INT),
    R(sub_null_k, E_INVALID, O_INT),
    R(sub_int64_min, E_INVALID, O_INT),
    R(sub_neg_expire, E_INVALID, O_INT),
    R(sub_empty_key, E_INVALID, O_INT),
    R(csub_null_c, E_INVALID, O_INT),
    R(csub_int64_min, E_INVALID, O_INT),
    R(counter_null_k, E_INVALID, O_INT),
    R(counter_null_key, E_INVALID, O_INT),
    R(counter_long_key, E_INVALID, O_INT),
    R(counter_null_out, E_INVALID, O_NONE),
    R(ccounter_null_c, E_INVALID, O_INT),
    R(addb_null_k, E_INVALID, O_INT),
    R(addb_min_gt_max, E_INVALID, O_INT),
    R(addb_empty_key, E_INVALID, O_INT),
    R(addb_neg_expire, E_INVALID, O_INT),
    R(caddb_null_c, E_INVALID, O_INT),
    R(subb_int64_min, E_INVALID, O_INT),
    R(csubb_min_gt_max, E_INVALID, O_INT),
    R(nx_null_k, E_INVALID, O_NONE),
    R(nx_null_key, E_INVALID, O_NONE),
    R(nx_null_val, E_INVALID, O_NONE),
    R(nx_neg_expire, E_INVALID, O_NONE),
    R(cnx_null_c, E_INVALID, O_NONE),
    R(cnx_long_key, E_INVALID, O_NONE),
    R(raw_null_k, E_INVALID, O_REPLY),
    R(raw_null_id, E_INVALID, O_REPLY),
    R(raw_null_query, E_INVALID, O_REPLY),
    R(raw_empty_query, E_INVALID, O_REPLY),
    R(raw_huge_query, E_INVALID, O_REPLY),
    R(raw_null_out, E_INVALID, O_NONE),
    R(craw_null_c, E_INVALID, O_REPLY),
    R(keys_null_k, E_INVALID, O_REPLY),
    R(keys_null_id, E_INVALID, O_REPLY),
    R(keys_null_glob_len, E_INVALID, O_REPLY),
    R(keys_null_out, E_INVALID, O_NONE),
    R(keys_huge_glob, E_INVALID, O_REPLY),
    R(ckeys_null_c, E_INVALID, O_REPLY),
    R(rglob_null_k, E_INVALID, O_NONE),
    R(rglob_empty, E_INVALID, O_NONE),
    R(rglob_null_glob, E_INVALID, O_NONE),
    R(rglob_huge, E_INVALID, O_NONE),
    R(crglob_null_c, E_INVALID, O_NONE),
    R(crglob_empty, E_INVALID, O_NONE),
    R(ttl_null_k, E_INVALID, O_INT),
    R(ttl_null_key, E_INVALID, O_INT),
    R(ttl_empty_key, E_INVALID, O_INT),
    R(ttl_null_out, E_INVALID, O_NONE),
    R(cttl_null_c, E_INVALID, O_INT),
    R(ping_null_k, E_INVALID, O_NONE),
    R(ping_null_id, E_INVALID, O_NONE),
    R(ping_empty_id, E_INVALID, O_NONE),
    R(cping_null_c, E_INVALID, O_NONE),
    R(stats_null_k, E_INVALID, O_STATS),
    R(stats_null_id, E_INVALID, O_STATS),
    R(stats_null_out, E_INVALID, O_NONE),
    R(cstats_null_c, E_INVALID, O_STATS),
    R(cstats_null_out, E_INVALID, O_NONE),
};

static int setup(void **state)
{
    (void)state;
    memset(g_long_key, 'k', sizeof g_long_key);
    memset(g_long_id, 'g', sizeof g_long_id);
    memcpy(g_long_id, "local:", 6);
    g_long_id[sizeof g_long_id - 1] = '\0';
    size_t huge = (size_t)4 << 20;
    g_huge_url = malloc(huge + 1);
    if (g_huge_url == NULL)
        return -1;
    memcpy(g_huge_url, "local:h://?", 11);
    memset(g_huge_url + 11, 'a', huge - 11);
    g_huge_url[huge] = '\0';
    if (kvi_new(&g_k) != KVI_OK || kvi_add_url(g_k, ID "://") != KVI_OK ||
        kvi_conn_get(g_k, ID, &g_c) != KVI_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kvi_free(g_k);
    free(g_huge_url);
    return 0;
}

static void assert_output_empty(const struct row *r)
{
    static const char zero[sizeof(kvi_stats)];
    switch (r->out) {
    case O_VAL:
        if (g_val.data != NULL || g_val.len != 0)
            fail_msg("%s: value not left empty", r->what);
        break;
    case O_REPLY:
        if (g_reply != NULL)
            fail_msg("%s: reply not left NULL", r->what);
        break;
    case O_INT:
        if (g_int != 0)
            fail_msg("%s: integer not zeroed (%lld)", r->what, (long long)g_int);
        break;
    case O_CONN:
        if (g_conn_out != NULL)
            fail_msg("%s: handle not left NULL", r->what);
        break;
    case O_CTX:
        if (g_ctx_out != NULL)
            fail_msg("%s: context not left NULL", r->what);
        break;
    case O_URL:
        if (g_url_out != NULL)
            fail_msg("%s: url not left NULL", r->what);
        break;
    case O_STATS:
        if (memcmp(&g_stats, zero, sizeof zero) != 0)
            fail_msg("%s: stats not zeroed", r->what);
        break;
    case O_NONE:
        break;
    }
}

static void test_every_bad_call_is_refused_and_leaves_outputs_empty(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        junk_outputs();
        kvi_status st = r->call();
        if (st != r->want && st != r->want2)
            fail_msg("%s: got %s, want %s", r->what, kvi_status_name(st), kvi_status_name(r->want));
        assert_output_empty(r);
    }
    printf("%zu bad calls refused\n", sizeof rows / sizeof rows[0]);
}

static void test_nothing_was_written_and_the_engine_never_called(void **state)
{
    (void)state;
    kvi_stats s;
    assert_int_equal(kvi_stats_get(g_k, ID, &s), KVI_OK);
    if (s.ops != 0)
        fail_msg("the engine saw %llu operations", (unsigned long long)s.ops);
    assert_true(s.rejected > 0);
    kvi_reply *r = NULL;
    assert_int_equal(kvi_keys(g_k, ID, "*", 1, &r), KVI_OK);
    assert_int_equal(kvi_reply_count(r), 0);
    kvi_reply_free(r);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(g_k, ID, "k", 1, &v), KVI_NOT_FOUND);
    int64_t n = 0;
    assert_int_equal(kvi_counter_fetch(g_k, ID, "c", 1, &n), KVI_NOT_FOUND);
    /* The huge URL, the empty one and the unknown ids defined nothing. */
    size_t ids = 0;
    assert_int_equal(kvi_foreach_conn(g_k, each, NULL), KVI_OK);
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(g_k, "local:h", &c), KVI_E_UNKNOWN_ENGINE);
    assert_int_equal(kvi_conn_get(g_k, "local:x", &c), KVI_E_UNKNOWN_ENGINE);
    (void)ids;
}

static void test_functions_without_status_accept_null(void **state)
{
    (void)state;
    kvi_free(NULL);
    kvi_value_free(NULL);
    kvi_value empty = KVI_VALUE_INIT;
    kvi_value_free(&empty);
    kvi_reply_free(NULL);
    kvi_url_free(NULL);
    kvi_set_log(NULL, NULL, NULL, KVI_LOG_DEBUG);
    kvi_set_slow_threshold(NULL, 1);
    kvi_set_clock(NULL, NULL, NULL);
    assert_string_equal(kvi_errmsg(NULL), "");
    assert_null(kvi_conn_id(NULL));
    assert_null(kvi_conn_engine(NULL));
    assert_int_equal(kvi_conn_caps(NULL), 0);
    assert_int_equal(kvi_reply_type_of(NULL), KVI_REPLY_NIL);
    assert_int_equal(kvi_reply_integer(NULL), 0);
    size_t len = 77;
    assert_null(kvi_reply_str(NULL, &len));
    assert_null(kvi_reply_str(NULL, NULL));
    assert_int_equal(kvi_reply_count(NULL), 0);
    assert_null(kvi_reply_element(NULL, 0));
    assert_null(kvi_url_option_get(NULL, "x"));
    assert_non_null(kvi_strerror((kvi_status)-1));
    assert_non_null(kvi_strerror((kvi_status)9999));
    assert_non_null(kvi_status_name((kvi_status)9999));
    char buf[8] = "x";
    (void)kvi_url_format_redacted(NULL, buf, sizeof buf);
    kvi_url *u = NULL;
    assert_int_equal(kvi_url_parse("redis://h/", &u, NULL, 0), KVI_OK);
    assert_null(kvi_url_option_get(u, NULL));
    assert_null(kvi_url_option_get(u, "nosuch"));
    (void)kvi_url_format_redacted(u, NULL, 0);
    kvi_url_free(u);
}

/* kvi_now_ms has no status to return; with NULL it reads the real clock.
 * Checked in a child process so that a crash is reported, not fatal to the
 * other tests. */
static void test_now_ms_null_does_not_crash(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka's own handlers would catch the signal in the child. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        int64_t real = kvi_test_wall_ms() / 1000 * 1000;
        int64_t got = kvi_now_ms(NULL);
        _exit(got >= real && got < real + 5000 ? 0 : 3);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_bad_call_is_refused_and_leaves_outputs_empty),
        cmocka_unit_test(test_nothing_was_written_and_the_engine_never_called),
        cmocka_unit_test(test_functions_without_status_accept_null),
        cmocka_unit_test(test_now_ms_null_does_not_crash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
