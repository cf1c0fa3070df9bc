/*
 * test_core_faults.c -- the core's wrappers against a fault-injecting engine.
 *
 * Engine "fault" (registered with kvi_register_engine) answers every slot
 * with a status the test chooses, records which slots were called and what
 * it was given, and on request scribbles into its outputs before failing,
 * sleeps, or (mode=leak) puts the URL's password into its messages.  The
 * tests prove what the core promises for every engine: statuses reach the
 * caller intact, outputs are empty after any failure, stats and slow-op
 * logging, argument and capability checks before the engine, registration
 * and URL errors, and no password in any message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "kvi/engine.h"

#define PASSWORD "S3cr3t-Pw-4711"

/* ---- the fault engine ------------------------------------------------------- */

enum op {
    OP_OPEN,
    OP_CLOSE,
    OP_STORE,
    OP_FETCH,
    OP_REMOVE,
    OP_ADD,
    OP_COUNTER,
    OP_RAW,
    OP_KEYS,
    OP_RMGLOB,
    OP_TTL,
    OP_PING,
    OP_BOUNDED,
    OP_NX,
    OP_COUNT
};

static struct {
    kvi_status next; /* what data slots return */
    kvi_status open_status;
    int scribble;      /* write into outputs before returning */
    int with_message;  /* set a detail message on error */
    unsigned sleep_us; /* per data-slot call */
    int calls[OP_COUNT];
    int64_t last_delta;
    int64_t last_min, last_max;
    int64_t last_expire;
    size_t last_key_len;
    size_t last_val_len;
    char last_glob[64];
    int outputs_were_zero; /* 1 when every output the engine saw was zeroed */
    uint32_t seen_timeout_ms, seen_connect_timeout_ms;
    int seen_lazy;
    int reply_missing;  /* return OK from raw/keys without a reply */
    int fetch_no_value; /* return OK from fetch without a value */
} fs;

struct fault_conn {
    char password[64];
    int leak; /* mode=leak: careless engine that prints its password */
};

static void reset_fault(void)
{
    memset(&fs, 0, sizeof fs);
    fs.with_message = 1;
    fs.outputs_were_zero = 1;
}

static int total_data_calls(void)
{
    int n = 0;
    for (int i = OP_STORE; i < OP_COUNT; i++)
        n += fs.calls[i];
    return n;
}

static void nap(void)
{
    if (fs.sleep_us) {
        struct timespec ts = {0, (long)fs.sleep_us * 1000L};
        nanosleep(&ts, NULL);
    }
}

/* The common end of every data slot. */
static kvi_status answer(kvi_conn *c, const char *op)
{
    nap();
    kvi_status st = fs.next;
    if (st == KVI_OK || st == KVI_NOT_FOUND || !fs.with_message)
        return st;
    struct fault_conn *fc = kvi_conn_priv(c);
    if (fc->leak) {
        kvi_engine_log(c, KVI_LOG_ERROR, "%s failed, password was %s", op, fc->password);
        return kvi_engine_error(c, st, "injected %s in %s (password %s)", kvi_status_name(st), op,
                                fc->password);
    }
    return kvi_engine_error(c, st, "injected %s in %s", kvi_status_name(st), op);
}

static kvi_status f_open(kvi_conn *c, const kvi_url *url)
{
    fs.calls[OP_OPEN]++;
    struct fault_conn *fc = kvi_conn_priv(c);
    if (url->password)
        snprintf(fc->password, sizeof fc->password, "%s", url->password);
    const char *mode = kvi_url_option_get(url, "mode");
    fc->leak = mode && strcmp(mode, "leak") == 0;
    fs.seen_timeout_ms = kvi_conn_timeout_ms(c);
    fs.seen_connect_timeout_ms = kvi_conn_connect_timeout_ms(c);
    fs.seen_lazy = kvi_conn_lazy(c);
    if (mode && strcmp(mode, "failopen") == 0) {
        if (fc->leak || url->password)
            return kvi_engine_error(c, fs.open_status, "cannot log in as %s with %s",
                                    url->user ? url->user : "-", fc->password);
        return kvi_engine_error(c, fs.open_status, "injected open failure");
    }
    return KVI_OK;
}

static void f_close(kvi_conn *c)
{
    (void)c;
    fs.calls[OP_CLOSE]++;
}

static kvi_status f_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t expire_s)
{
    (void)key;
    (void)val;
    fs.calls[OP_STORE]++;
    fs.last_key_len = key_len;
    fs.last_val_len = val_len;
    fs.last_expire = expire_s;
    return answer(c, "store");
}

static kvi_status f_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    (void)key;
    fs.calls[OP_FETCH]++;
    fs.last_key_len = key_len;
    if (out->data != NULL || out->len != 0)
        fs.outputs_were_zero = 0;
    if (fs.scribble || (fs.next == KVI_OK && !fs.fetch_no_value)) {
        if (kvi_value_set(c, out, "scribbled", 9) != KVI_OK)
            return KVI_E_NOMEM;
    }
    return answer(c, "fetch");
}

static kvi_status f_remove(kvi_conn *c, const void *key, size_t key_len)
{
    (void)key;
    fs.calls[OP_REMOVE]++;
    fs.last_key_len = key_len;
    return answer(c, "remove");
}

static kvi_status f_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                        int64_t expire_s, int64_t *new_value)
{
    (void)key;
    fs.calls[OP_ADD]++;
    fs.last_key_len = key_len;
    fs.last_delta = delta;
    fs.last_expire = expire_s;
    if (*new_value != 0)
        fs.outputs_were_zero = 0;
    if (fs.scribble || fs.next == KVI_OK)
        *new_value = 4242;
    return answer(c, "add");
}

static kvi_status f_counter(kvi_conn *c, const void *key, size_t key_len, int64_t *out)
{
    (void)key;
    fs.calls[OP_COUNTER]++;
    fs.last_key_len = key_len;
    if (*out != 0)
        fs.outputs_were_zero = 0;
    if (fs.scribble || fs.next == KVI_OK)
        *out = 4343;
    return answer(c, "counter_fetch");
}

static kvi_reply *scribble_reply(void)
{
    kvi_reply *r = kvi_reply_new_array(2);
    assert_non_null(r);
    assert_int_equal(kvi_reply_append(r, kvi_reply_new_string(KVI_REPLY_STRING, "k", 1)), KVI_OK);
    return r;
}

static kvi_status f_raw(kvi_conn *c, const char *q, size_t qlen, kvi_reply **out)
{
    (void)q;
    (void)qlen;
    fs.calls[OP_RAW]++;
    if (*out != NULL)
        fs.outputs_were_zero = 0;
    if ((fs.scribble || fs.next == KVI_OK) && !fs.reply_missing)
        *out = scribble_reply();
    return answer(c, "raw_query");
}

static kvi_status f_keys(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out)
{
    fs.calls[OP_KEYS]++;
    snprintf(fs.last_glob, sizeof fs.last_glob, "%.*s", (int)glob_len, glob);
    if (*out != NULL)
        fs.outputs_were_zero = 0;
    if ((fs.scribble || fs.next == KVI_OK) && !fs.reply_missing)
        *out = scribble_reply();
    return answer(c, "keys");
}

static kvi_status f_rmglob(kvi_conn *c, const char *glob, size_t glob_len, uint64_t *removed)
{
    fs.calls[OP_RMGLOB]++;
    snprintf(fs.last_glob, sizeof fs.last_glob, "%.*s", (int)glob_len, glob);
    if (*removed != 0)
        fs.outputs_were_zero = 0;
    if (fs.scribble || fs.next == KVI_OK)
        *removed = 17;
    return answer(c, "remove_chunk");
}

static kvi_status f_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
{
    (void)key;
    fs.calls[OP_TTL]++;
    fs.last_key_len = key_len;
    if (*ttl_s != 0)
        fs.outputs_were_zero = 0;
    if (fs.scribble || fs.next == KVI_OK)
        *ttl_s = 99;
    return answer(c, "ttl");
}

static kvi_status f_ping(kvi_conn *c)
{
    fs.calls[OP_PING]++;
    return answer(c, "ping");
}

static kvi_status f_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    (void)key;
    fs.calls[OP_BOUNDED]++;
    fs.last_key_len = key_len;
    fs.last_delta = delta;
    fs.last_expire = expire_s;
    fs.last_min = min;
    fs.last_max = max;
    if (*value != 0)
        fs.outputs_were_zero = 0;
    if (fs.scribble || fs.next == KVI_OK || fs.next == KVI_OUT_OF_BOUNDS)
        *value = 4444;
    return answer(c, "add_bounded");
}

static kvi_status f_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                             size_t val_len, int64_t expire_s)
{
    (void)key;
    (void)val;
    fs.calls[OP_NX]++;
    fs.last_key_len = key_len;
    fs.last_val_len = val_len;
    fs.last_expire = expire_s;
    return answer(c, "store_nx");
}

static const char *const fault_options[] = {"mode", NULL};

#define ALL_CAPS                                                                                   \
    (KVI_CAP_TTL | KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS | KVI_CAP_BINARY | KVI_CAP_ITERATE |    \
     KVI_CAP_RAW_QUERY | KVI_CAP_CONDITIONAL)

static const struct kvi_engine fault_engine = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "fault",
    .description = "fault-injecting test engine",
    .caps = ALL_CAPS,
    .conn_size = sizeof(struct fault_conn),
    .max_value_len = 100,
    .options = fault_options,
    .open = f_open,
    .close = f_close,
    .store = f_store,
    .fetch = f_fetch,
    .remove = f_remove,
    .add = f_add,
    .counter_fetch = f_counter,
    .raw_query = f_raw,
    .keys = f_keys,
    .remove_chunk = f_rmglob,
    .ttl = f_ttl,
    .ping = f_ping,
    .add_bounded = f_add_bounded,
    .store_nx = f_store_nx,
};

/* Only the required slots, no capabilities. */
static const struct kvi_engine bare_engine = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "faultbare",
    .caps = 0,
    .conn_size = sizeof(struct fault_conn),
    .open = f_open,
    .close = f_close,
    .store = f_store,
    .fetch = f_fetch,
    .remove = f_remove,
};

/* Counters but no TTL. */
static const struct kvi_engine nottl_engine = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "faultnottl",
    .caps = KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS,
    .conn_size = sizeof(struct fault_conn),
    .open = f_open,
    .close = f_close,
    .store = f_store,
    .fetch = f_fetch,
    .remove = f_remove,
    .add = f_add,
    .counter_fetch = f_counter,
};

/* ---- a counting allocator: nothing may leak on error paths ------------------- */

static atomic_long live_allocs;

static void *count_malloc(void *ud, size_t n)
{
    (void)ud;
    void *p = malloc(n);
    if (p)
        atomic_fetch_add(&live_allocs, 1);
    return p;
}

static void *count_realloc(void *ud, void *p, size_t n)
{
    (void)ud;
    void *q = realloc(p, n);
    if (q && !p)
        atomic_fetch_add(&live_allocs, 1);
    return q;
}

static void count_free(void *ud, void *p)
{
    (void)ud;
    if (p)
        atomic_fetch_sub(&live_allocs, 1);
    free(p);
}

static const kvi_allocator counting = {count_malloc, count_realloc, count_free, NULL};

/* ---- log capture ----------------------------------------------------------- */

#define MAX_LOG 64

static struct {
    pthread_mutex_t lock;
    int n;
    kvi_log_level level[MAX_LOG];
    char line[MAX_LOG][600];
} logs = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void capture_log(void *ud, kvi_log_level level, const char *msg)
{
    (void)ud;
    pthread_mutex_lock(&logs.lock);
    if (logs.n < MAX_LOG) {
        logs.level[logs.n] = level;
        snprintf(logs.line[logs.n], sizeof logs.line[logs.n], "%s", msg);
        logs.n++;
    }
    pthread_mutex_unlock(&logs.lock);
}

/* ---- fixture --------------------------------------------------------------- */

typedef struct fx {
    kvi *k;
    kvi_conn *c;
    const char *id;
} fx;

#define F ((fx *)*state)

static int setup(void **state)
{
    reset_fault();
    logs.n = 0;
    atomic_store(&live_allocs, 0);
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(kvi_new_with_allocator(&f->k, &counting), KVI_OK);
    kvi_set_log(f->k, capture_log, NULL, KVI_LOG_DEBUG);
    assert_int_equal(kvi_register_engine(f->k, &fault_engine), KVI_OK);
    assert_int_equal(kvi_register_engine(f->k, &bare_engine), KVI_OK);
    assert_int_equal(kvi_register_engine(f->k, &nottl_engine), KVI_OK);
    f->id = "fault:grp";
    if (kvi_add_url(f->k, "fault:grp://user:" PASSWORD "@host:1/db?mode=leak") != KVI_OK)
        fail_msg("add_url: %s", kvi_errmsg(f->k));
    assert_int_equal(kvi_conn_get(f->k, f->id, &f->c), KVI_OK);
    assert_int_equal(fs.calls[OP_OPEN], 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = F;
    kvi_free(f->k);
    free(f);
    /* Every allocation through the context's allocator was returned. */
    assert_int_equal(atomic_load(&live_allocs), 0);
    return 0;
}

/* ---- calling every operation --------------------------------------------------- */

enum form { BY_HANDLE, BY_ID };

/* Calls the operation that reaches slot op, with valid arguments, in one
 * form.  Outputs start as garbage; after the call they must be empty unless
 * the status is OK.  Returns the status. */
static kvi_status call_op(fx *f, enum op op, enum form form)
{
    kvi_conn *c = f->c;
    const char *id = f->id;
    int h = form == BY_HANDLE;
    kvi_status st;
    switch (op) {
    case OP_STORE:
        return h ? kvi_conn_store(c, "key", 3, "val", 3, 10)
                 : kvi_store(f->k, id, "key", 3, "val", 3, 10);
    case OP_FETCH: {
        kvi_value v = {(char *)"garbage", 7, NULL, NULL};
        st = h ? kvi_conn_fetch(c, "key", 3, &v) : kvi_fetch(f->k, id, "key", 3, &v);
        if (st != KVI_OK) {
            assert_null(v.data);
            assert_int_equal(v.len, 0);
        } else {
            assert_int_equal(v.len, 9);
            assert_memory_equal(v.data, "scribbled", 9);
        }
        kvi_value_free(&v);
        return st;
    }
    case OP_REMOVE:
        return h ? kvi_conn_remove(c, "key", 3) : kvi_remove(f->k, id, "key", 3);
    case OP_ADD: {
        int64_t nv = -77;
        st = h ? kvi_conn_add(c, "key", 3, 5, 10, &nv) : kvi_add(f->k, id, "key", 3, 5, 10, &nv);
        assert_int_equal(nv, st == KVI_OK ? 4242 : 0);
        /* sub reaches the same slot. */
        int64_t nv2 = -77;
        kvi_status st2 =
            h ? kvi_conn_sub(c, "key", 3, 5, 0, &nv2) : kvi_sub(f->k, id, "key", 3, 5, 0, &nv2);
        assert_int_equal(st2, st);
        assert_int_equal(nv2, st == KVI_OK ? 4242 : 0);
        return st;
    }
    case OP_COUNTER: {
        int64_t v = -77;
        st =
            h ? kvi_conn_counter_fetch(c, "key", 3, &v) : kvi_counter_fetch(f->k, id, "key", 3, &v);
        assert_int_equal(v, st == KVI_OK ? 4343 : 0);
        return st;
    }
    case OP_RAW: {
        kvi_reply *r = (kvi_reply *)&r;
        st = h ? kvi_conn_raw_query(c, "PING", 4, &r) : kvi_raw_query(f->k, id, "PING", 4, &r);
        if (st == KVI_OK)
            assert_int_equal(kvi_reply_count(r), 1);
        else
            assert_null(r);
        kvi_reply_free(r);
        return st;
    }
    case OP_KEYS: {
        kvi_reply *r = (kvi_reply *)&r;
        st = h ? kvi_conn_keys(c, "k*", 2, &r) : kvi_keys(f->k, id, "k*", 2, &r);
        if (st == KVI_OK)
            assert_int_equal(kvi_reply_count(r), 1);
        else
            assert_null(r);
        kvi_reply_free(r);
        return st;
    }
    case OP_RMGLOB: {
        uint64_t n = 77;
        st = h ? kvi_conn_remove_chunk(c, "k*", 2, &n) : kvi_remove_chunk(f->k, id, "k*", 2, &n);
        assert_int_equal(n, st == KVI_OK ? 17u : 0u);
        return st;
    }
    case OP_TTL: {
        int64_t t = -77;
        st = h ? kvi_conn_ttl(c, "key", 3, &t) : kvi_ttl(f->k, id, "key", 3, &t);
        assert_int_equal(t, st == KVI_OK ? 99 : 0);
        return st;
    }
    case OP_PING:
        return h ? kvi_conn_ping(c) : kvi_ping(f->k, id);
    case OP_BOUNDED: {
        /* The one exception to "outputs empty unless OK": a refusal reports
         * the current value. */
        int64_t nv = -77;
        st = h ? kvi_conn_add_bounded(c, "key", 3, 5, 10, 0, 9, &nv)
               : kvi_add_bounded(f->k, id, "key", 3, 5, 10, 0, 9, &nv);
        assert_int_equal(nv, st == KVI_OK || st == KVI_OUT_OF_BOUNDS ? 4444 : 0);
        int64_t nv2 = -77;
        kvi_status st2 = h ? kvi_conn_sub_bounded(c, "key", 3, 5, 0, 0, 9, &nv2)
                           : kvi_sub_bounded(f->k, id, "key", 3, 5, 0, 0, 9, &nv2);
        assert_int_equal(st2, st);
        assert_int_equal(nv2, nv);
        return st;
    }
    case OP_NX:
        return h ? kvi_conn_store_nx(c, "key", 3, "val", 3, 10)
                 : kvi_store_nx(f->k, id, "key", 3, "val", 3, 10);
    default:
        fail_msg("no such op %d", (int)op);
    }
    return KVI_E_INTERNAL;
}

static const char *op_name(enum op op)
{
    static const char *const names[OP_COUNT] = {
        "open",      "close", "store",       "fetch", "remove", "add",         "counter_fetch",
        "raw_query", "keys",  "remove_chunk", "ttl",   "ping",   "add_bounded", "store_nx"};
    return names[op];
}

/* ---- statuses and outputs ------------------------------------------------------- */

static void test_every_engine_status_reaches_the_caller(void **state)
{
    fx *f = F;
    for (int s = 0; s < KVI_STATUS_COUNT; s++) {
        for (int op = OP_STORE; op < OP_COUNT; op++) {
            for (int form = BY_HANDLE; form <= BY_ID; form++) {
                fs.next = (kvi_status)s;
                int before = fs.calls[op];
                kvi_status got = call_op(f, (enum op)op, (enum form)form);
                if (got != (kvi_status)s)
                    fail_msg("%s (%s form): engine said %s, caller got %s", op_name((enum op)op),
                             form == BY_ID ? "id" : "handle", kvi_status_name((kvi_status)s),
                             kvi_status_name(got));
                assert_true(fs.calls[op] > before);
            }
        }
    }
}

static void test_outputs_are_empty_after_error_even_if_engine_wrote(void **state)
{
    fx *f = F;
    fs.scribble = 1;
    long baseline = atomic_load(&live_allocs);
    const kvi_status fails[] = {KVI_NOT_FOUND, KVI_E_IO, KVI_E_TIMEOUT, KVI_E_NOT_A_COUNTER,
                                KVI_E_INTERNAL};
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
        fs.next = fails[i];
        for (int op = OP_STORE; op < OP_COUNT; op++) {
            /* call_op asserts the outputs are empty. */
            assert_int_equal(call_op(f, (enum op)op, BY_HANDLE), fails[i]);
            assert_int_equal(call_op(f, (enum op)op, BY_ID), fails[i]);
        }
    }
    /* The value the engine allocated before failing was released. */
    assert_int_equal(atomic_load(&live_allocs), baseline);
}

static void test_outputs_are_zeroed_before_the_engine_sees_them(void **state)
{
    fx *f = F;
    fs.next = KVI_OK;
    for (int op = OP_STORE; op < OP_COUNT; op++) {
        call_op(f, (enum op)op, BY_HANDLE);
        call_op(f, (enum op)op, BY_ID);
    }
    assert_true(fs.outputs_were_zero);
}

static void test_failed_values_are_safe_to_free_twice(void **state)
{
    fx *f = F;
    fs.next = KVI_E_IO;
    fs.scribble = 1;
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_conn_fetch(f->c, "k", 1, &v), KVI_E_IO);
    kvi_value_free(&v);
    kvi_value_free(&v);
    kvi_value_free(NULL);
    kvi_reply_free(NULL);
    assert_null(v.data);
}

static void test_engine_ok_without_reply_is_internal_error(void **state)
{
    fx *f = F;
    fs.next = KVI_OK;
    fs.reply_missing = 1;
    kvi_reply *r = (kvi_reply *)&r;
    assert_int_equal(kvi_conn_raw_query(f->c, "PING", 4, &r), KVI_E_INTERNAL);
    assert_null(r);
    assert_int_equal(kvi_conn_keys(f->c, "*", 1, &r), KVI_E_INTERNAL);
    assert_null(r);
    assert_non_null(strstr(kvi_errmsg(f->k), "fault:grp"));
}

static void test_error_detail_names_the_engine_id(void **state)
{
    fx *f = F;
    fs.next = KVI_E_BACKEND;
    assert_int_equal(kvi_conn_remove(f->c, "k", 1), KVI_E_BACKEND);
    const char *m = kvi_errmsg(f->k);
    assert_non_null(strstr(m, "fault:grp"));
    assert_non_null(strstr(m, "injected KVI_E_BACKEND in remove"));

    /* An engine that forgets its message still yields one. */
    fs.with_message = 0;
    fs.next = KVI_E_PROTOCOL;
    assert_int_equal(kvi_remove(f->k, f->id, "k", 1), KVI_E_PROTOCOL);
    m = kvi_errmsg(f->k);
    assert_non_null(strstr(m, "fault:grp"));
    assert_non_null(strstr(m, "remove"));
    assert_non_null(strstr(m, kvi_strerror(KVI_E_PROTOCOL)));
}

static void test_engine_ok_fetch_without_value_is_empty_value(void **state)
{
    fx *f = F;
    fs.next = KVI_OK;
    fs.fetch_no_value = 1;
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_conn_fetch(f->c, "k", 1, &v), KVI_OK);
    assert_non_null(v.data);
    assert_int_equal(v.len, 0);
    assert_int_equal(v.data[0], '\0');
    kvi_value_free(&v);
}

/* ---- stats and slow operations ---------------------------------------------------- */

static void test_stats_count_ops_errors_and_misses(void **state)
{
    fx *f = F;
    kvi_stats s;
    assert_int_equal(kvi_conn_stats(f->c, &s), KVI_OK);
    assert_int_equal(s.ops, 0);
    fs.next = KVI_OK;
    call_op(f, OP_STORE, BY_HANDLE);
    call_op(f, OP_FETCH, BY_ID);
    call_op(f, OP_PING, BY_HANDLE);
    fs.next = KVI_NOT_FOUND;
    call_op(f, OP_FETCH, BY_HANDLE);
    call_op(f, OP_REMOVE, BY_ID);
    fs.next = KVI_E_TIMEOUT;
    call_op(f, OP_STORE, BY_ID);
    call_op(f, OP_TTL, BY_HANDLE);
    call_op(f, OP_COUNTER, BY_ID);
    fs.next = KVI_E_INVALID; /* an engine's own INVALID counts as an error */
    call_op(f, OP_REMOVE, BY_HANDLE);
    assert_int_equal(kvi_stats_get(f->k, f->id, &s), KVI_OK);
    assert_int_equal(s.ops, 9);
    assert_int_equal(s.misses, 2);
    assert_int_equal(s.errors, 4);
    assert_int_equal(s.rejected, 0);
    assert_int_equal(s.slow_ops, 0);

    /* Refusals of the conditional operations are outcomes, not errors. */
    fs.next = KVI_OUT_OF_BOUNDS;
    call_op(f, OP_BOUNDED, BY_HANDLE); /* add_bounded + sub_bounded */
    fs.next = KVI_KEY_EXISTS;
    call_op(f, OP_NX, BY_ID);
    assert_int_equal(kvi_stats_get(f->k, f->id, &s), KVI_OK);
    assert_int_equal(s.ops, 12);
    assert_int_equal(s.misses, 2);
    assert_int_equal(s.errors, 4);
    assert_false(KVI_STATUS_IS_ERROR(KVI_OUT_OF_BOUNDS));
    assert_false(KVI_STATUS_IS_ERROR(KVI_KEY_EXISTS));
    assert_true(KVI_STATUS_IS_ERROR(KVI_E_INTERNAL));
}

static void test_slow_ops_are_counted_and_logged(void **state)
{
    fx *f = F;
    /* 50 ms: a ping of the fault engine is microseconds, even under
     * valgrind on a loaded machine; the slow store sleeps 60 ms. */
    kvi_set_slow_threshold(f->k, 50000);
    fs.next = KVI_OK;
    assert_int_equal(kvi_conn_ping(f->c), KVI_OK); /* fast */
    kvi_stats s;
    assert_int_equal(kvi_conn_stats(f->c, &s), KVI_OK);
    assert_int_equal(s.slow_ops, 0);
    int before = logs.n;

    fs.sleep_us = 60000;
    assert_int_equal(kvi_conn_store(f->c, "k", 1, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_conn_stats(f->c, &s), KVI_OK);
    assert_int_equal(s.slow_ops, 1);
    assert_true(s.total_us >= 60000);
    int found = 0;
    for (int i = before; i < logs.n; i++) {
        if (logs.level[i] == KVI_LOG_WARN && strstr(logs.line[i], "slow") &&
            strstr(logs.line[i], "store") && strstr(logs.line[i], "fault:grp"))
            found = 1;
    }
    if (!found)
        fail_msg("no slow-op warning among %d log lines", logs.n - before);

    /* Threshold 0 turns the check off. */
    kvi_set_slow_threshold(f->k, 0);
    assert_int_equal(kvi_conn_store(f->c, "k", 1, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_conn_stats(f->c, &s), KVI_OK);
    assert_int_equal(s.slow_ops, 1);
    assert_int_equal(s.ops, 3);
}

/* Without a log hook and without an explicit threshold nobody can learn of
 * a slow call, so calls are not timed (no clock read per call); a log hook
 * brings the default 100 ms threshold back. */
static void test_calls_are_timed_only_with_a_log_hook_or_a_threshold(void **state)
{
    fx *f = F;
    assert_int_equal(kvi_set_log(f->k, NULL, NULL, KVI_LOG_DEBUG), KVI_OK);
    fs.next = KVI_OK;
    fs.sleep_us = 150000;
    assert_int_equal(kvi_conn_store(f->c, "k", 1, "v", 1, 0), KVI_OK);
    kvi_stats s;
    assert_int_equal(kvi_conn_stats(f->c, &s), KVI_OK);
    assert_int_equal(s.slow_ops, 0);
    assert_int_equal(s.total_us, 0);

    assert_int_equal(kvi_set_log(f->k, capture_log, NULL, KVI_LOG_DEBUG), KVI_OK);
    assert_int_equal(kvi_conn_store(f->c, "k", 1, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_conn_stats(f->c, &s), KVI_OK);
    assert_int_equal(s.slow_ops, 1);
    assert_true(s.total_us >= 100000);
    assert_int_equal(s.ops, 2);
}

/* ---- checks before the engine ----------------------------------------------------- */

static void test_invalid_arguments_never_reach_the_engine(void **state)
{
    fx *f = F;
    kvi_conn *c = f->c;
    kvi *k = f->k;
    const char *id = f->id;
    char big[KVI_MAX_KEY_LEN + 1];
    memset(big, 'k', sizeof big);
    kvi_value v = KVI_VALUE_INIT;
    int64_t n;
    uint64_t u;
    kvi_reply *r;
    static const char q[] = "query";
    int rejected = 0;
#define BAD(call)                                                                                  \
    do {                                                                                           \
        kvi_status st_ = (call);                                                                   \
        if (st_ != KVI_E_INVALID)                                                                  \
            fail_msg("%s: %s, want KVI_E_INVALID", #call, kvi_status_name(st_));                   \
        rejected++;                                                                                \
    } while (0)
    BAD(kvi_conn_store(c, NULL, 3, "v", 1, 0));
    BAD(kvi_conn_store(c, "k", 0, "v", 1, 0));
    BAD(kvi_store(k, id, big, sizeof big, "v", 1, 0));
    BAD(kvi_conn_store(c, "k", 1, NULL, 1, 0));
    BAD(kvi_conn_store(c, "k", 1, big, 101, 0)); /* engine max_value_len is 100 */
    BAD(kvi_store(k, id, "k", 1, "v", 1, -1));
    BAD(kvi_conn_store(c, "k", 1, "v", 1, KVI_MAX_EXPIRE_S + 1));
    BAD(kvi_conn_fetch(c, "k", 1, NULL));
    BAD(kvi_fetch(k, id, NULL, 1, &v));
    BAD(kvi_conn_remove(c, big, sizeof big));
    BAD(kvi_conn_add(c, "k", 1, 1, -1, &n));
    BAD(kvi_add(k, id, "k", 0, 1, 0, &n));
    BAD(kvi_conn_sub(c, "k", 1, INT64_MIN, 0, &n));
    BAD(kvi_sub(k, id, "k", 1, INT64_MIN, 0, NULL));
    BAD(kvi_conn_counter_fetch(c, "k", 1, NULL));
    BAD(kvi_conn_raw_query(c, NULL, 5, &r));
    BAD(kvi_conn_raw_query(c, q, 0, &r));
    BAD(kvi_raw_query(k, id, q, KVI_MAX_QUERY_LEN + 1u, &r));
    BAD(kvi_conn_raw_query(c, q, 5, NULL));
    BAD(kvi_conn_keys(c, NULL, 4, &r));
    BAD(kvi_keys(k, id, "*", 1, NULL));
    BAD(kvi_conn_keys(c, big, SIZE_MAX, &r));
    BAD(kvi_conn_remove_chunk(c, NULL, 0, &u));
    BAD(kvi_remove_chunk(k, id, "", 0, &u));
    BAD(kvi_conn_ttl(c, "k", 1, NULL));
    BAD(kvi_ttl(k, id, big, SIZE_MAX, &n));
    BAD(kvi_conn_add_bounded(c, "k", 1, 1, 0, 5, 4, &n)); /* min > max */
    BAD(kvi_sub_bounded(k, id, "k", 1, 1, 0, INT64_MAX, INT64_MIN, &n));
    BAD(kvi_conn_sub_bounded(c, "k", 1, INT64_MIN, 0, INT64_MIN, INT64_MAX, &n));
    BAD(kvi_add_bounded(k, id, "k", 1, 1, -1, 0, 1, &n));
    BAD(kvi_conn_add_bounded(c, NULL, 1, 1, 0, 0, 1, &n));
    BAD(kvi_conn_store_nx(c, "k", 1, NULL, 1, 0));
    BAD(kvi_store_nx(k, id, "k", 1, big, 101, 0));
    BAD(kvi_conn_store_nx(c, big, sizeof big, "v", 1, 0));
    BAD(kvi_conn_store_nx(c, "k", 1, "v", 1, -1));
#undef BAD
    assert_int_equal(total_data_calls(), 0);
    kvi_stats s;
    assert_int_equal(kvi_conn_stats(c, &s), KVI_OK);
    assert_int_equal(s.ops, 0);
    assert_int_equal(s.rejected, (uint64_t)rejected);
    assert_true(strlen(kvi_errmsg(k)) > 0);

    /* The limits themselves are accepted. */
    fs.next = KVI_OK;
    assert_int_equal(kvi_conn_store(c, big, KVI_MAX_KEY_LEN, big, 100, KVI_MAX_EXPIRE_S), KVI_OK);
    assert_int_equal(fs.last_key_len, KVI_MAX_KEY_LEN);
    assert_int_equal(fs.last_val_len, 100);
    assert_int_equal(fs.last_expire, KVI_MAX_EXPIRE_S);
    assert_int_equal(kvi_conn_store(c, "k", 1, NULL, 0, 0), KVI_OK);
    assert_int_equal(fs.last_val_len, 0);
    assert_int_equal(kvi_conn_sub(c, "k", 1, INT64_MAX, 0, NULL), KVI_OK);
    assert_int_equal(fs.last_delta, -INT64_MAX);
    assert_int_equal(kvi_conn_add(c, "k", 1, INT64_MIN, 0, NULL), KVI_OK);
    assert_int_equal(fs.last_delta, INT64_MIN);
    /* min == max is a valid (one-point) range; the bounds reach the engine
     * unchanged and sub negates only delta. */
    assert_int_equal(kvi_conn_sub_bounded(c, "k", 1, 3, 7, -4, -4, NULL), KVI_OK);
    assert_int_equal(fs.last_delta, -3);
    assert_int_equal(fs.last_expire, 7);
    assert_int_equal(fs.last_min, -4);
    assert_int_equal(fs.last_max, -4);
    assert_int_equal(kvi_conn_add_bounded(c, "k", 1, INT64_MIN, 0, INT64_MIN, INT64_MAX, NULL),
                     KVI_OK);
    assert_int_equal(fs.last_delta, INT64_MIN);
}

static void test_sub_reaches_the_engine_as_negated_add(void **state)
{
    fx *f = F;
    fs.next = KVI_OK;
    int64_t nv;
    assert_int_equal(kvi_conn_sub(f->c, "k", 1, 5, 7, &nv), KVI_OK);
    assert_int_equal(fs.last_delta, -5);
    assert_int_equal(fs.last_expire, 7);
    assert_int_equal(kvi_sub(f->k, f->id, "k", 1, -5, 0, &nv), KVI_OK);
    assert_int_equal(fs.last_delta, 5);
    assert_int_equal(kvi_add(f->k, f->id, "k", 1, -3, 0, &nv), KVI_OK);
    assert_int_equal(fs.last_delta, -3);
    assert_int_equal(fs.calls[OP_ADD], 3);
}

static void test_empty_glob_lists_everything(void **state)
{
    fx *f = F;
    fs.next = KVI_OK;
    kvi_reply *r = NULL;
    assert_int_equal(kvi_conn_keys(f->c, NULL, 0, &r), KVI_OK);
    assert_string_equal(fs.last_glob, "*");
    kvi_reply_free(r);
    assert_int_equal(kvi_keys(f->k, f->id, "", 0, &r), KVI_OK);
    assert_string_equal(fs.last_glob, "*");
    kvi_reply_free(r);
    assert_int_equal(kvi_conn_remove_chunk(f->c, "a*", 2, NULL), KVI_OK);
    assert_string_equal(fs.last_glob, "a*");
}

static void test_missing_capability_is_unsupported_without_engine_call(void **state)
{
    fx *f = F;
    assert_int_equal(kvi_add_url(f->k, "faultbare://"), KVI_OK);
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(f->k, "faultbare", &c), KVI_OK);
    assert_int_equal(kvi_conn_caps(c), 0);
    int64_t n = 5;
    uint64_t u = 5;
    kvi_reply *r = (kvi_reply *)&r;
#define UNSUP(call)                                                                                \
    do {                                                                                           \
        kvi_status st_ = (call);                                                                   \
        if (st_ != KVI_E_UNSUPPORTED)                                                              \
            fail_msg("%s: %s, want KVI_E_UNSUPPORTED", #call, kvi_status_name(st_));               \
    } while (0)
    UNSUP(kvi_conn_add(c, "k", 1, 1, 0, &n));
    assert_int_equal(n, 0);
    UNSUP(kvi_sub(f->k, "faultbare", "k", 1, 1, 0, &n));
    UNSUP(kvi_conn_counter_fetch(c, "k", 1, &n));
    UNSUP(kvi_conn_raw_query(c, "PING", 4, &r));
    assert_null(r);
    UNSUP(kvi_keys(f->k, "faultbare", "*", 1, &r));
    UNSUP(kvi_conn_remove_chunk(c, "*", 1, &u));
    assert_int_equal(u, 0);
    UNSUP(kvi_conn_ttl(c, "k", 1, &n));
    UNSUP(kvi_conn_store(c, "k", 1, "v", 1, 10));
    n = 5;
    UNSUP(kvi_conn_add_bounded(c, "k", 1, 1, 0, 0, 9, &n));
    assert_int_equal(n, 0);
    UNSUP(kvi_sub_bounded(f->k, "faultbare", "k", 1, 1, 0, 0, 9, &n));
    UNSUP(kvi_conn_store_nx(c, "k", 1, "v", 1, 0));
    assert_int_equal(total_data_calls(), 0);
    kvi_stats s;
    assert_int_equal(kvi_conn_stats(c, &s), KVI_OK);
    assert_int_equal(s.rejected, 11);
    assert_int_equal(s.ops, 0);
    assert_non_null(strstr(kvi_errmsg(f->k), "faultbare"));

    /* What needs no capability reaches the engine; a missing ping slot is
     * answered by the core. */
    fs.next = KVI_OK;
    assert_int_equal(kvi_conn_store(c, "k", 1, "v", 1, 0), KVI_OK);
    assert_int_equal(kvi_conn_remove(c, "k", 1), KVI_OK);
    assert_int_equal(kvi_conn_ping(c), KVI_OK);
    assert_int_equal(fs.calls[OP_STORE], 1);
    assert_int_equal(fs.calls[OP_REMOVE], 1);

    /* Counters without TTL: a counter that should expire is refused. */
    assert_int_equal(kvi_add_url(f->k, "faultnottl://"), KVI_OK);
    assert_int_equal(kvi_conn_get(f->k, "faultnottl", &c), KVI_OK);
    UNSUP(kvi_conn_add(c, "k", 1, 1, 10, &n));
    UNSUP(kvi_conn_sub(c, "k", 1, 1, 10, &n));
    assert_int_equal(fs.calls[OP_ADD], 0);
    assert_int_equal(kvi_conn_add(c, "k", 1, 1, 0, &n), KVI_OK);
    assert_int_equal(fs.calls[OP_ADD], 1);
#undef UNSUP
}

/* ---- registration and URLs ------------------------------------------------------- */

static void test_register_engine_rejects_duplicates_and_malformed(void **state)
{
    fx *f = F;
    kvi *k = f->k;
    assert_int_equal(kvi_register_engine(k, &fault_engine), KVI_E_EXISTS);
    struct kvi_engine e = fault_engine;
    e.name = "local";
    assert_int_equal(kvi_register_engine(k, &e), KVI_E_EXISTS);
    assert_int_equal(kvi_register_engine(NULL, &fault_engine), KVI_E_INVALID);
    assert_int_equal(kvi_register_engine(k, NULL), KVI_E_INVALID);

    char long_name[80];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const char *bad_names[] = {NULL,     "",       "Fault",  "9fault",
                               "fa-ult", "fa ult", "fa:ult", long_name};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        e = fault_engine;
        e.name = bad_names[i];
        if (kvi_register_engine(k, &e) != KVI_E_INVALID)
            fail_msg("engine name \"%s\" accepted", bad_names[i] ? bad_names[i] : "(null)");
    }
    e = fault_engine;
    e.name = "fault2";
    e.abi_version = 0;
    assert_int_equal(kvi_register_engine(k, &e), KVI_E_INVALID);
    e.abi_version = KVI_ENGINE_ABI + 1;
    assert_int_equal(kvi_register_engine(k, &e), KVI_E_INVALID);

    struct {
        const char *what;
        struct kvi_engine e;
    } broken[11];
    size_t nb = 0;
    for (size_t i = 0; i < 11; i++) {
        broken[i].e = fault_engine;
        broken[i].e.name = "fault2";
    }
    broken[nb].what = "no open";
    broken[nb++].e.open = NULL;
    broken[nb].what = "no store";
    broken[nb++].e.store = NULL;
    broken[nb].what = "no fetch";
    broken[nb++].e.fetch = NULL;
    broken[nb].what = "no remove";
    broken[nb++].e.remove = NULL;
    broken[nb].what = "counters without add";
    broken[nb++].e.add = NULL;
    broken[nb].what = "counters without counter_fetch";
    broken[nb++].e.counter_fetch = NULL;
    broken[nb].what = "iterate without keys";
    broken[nb++].e.keys = NULL;
    broken[nb].what = "ttl without ttl slot";
    broken[nb++].e.ttl = NULL;
    broken[nb].what = "conditional without add_bounded";
    broken[nb++].e.add_bounded = NULL;
    broken[nb].what = "conditional without store_nx";
    broken[nb++].e.store_nx = NULL;
    broken[nb].what = "conditional on ABI 1";
    broken[nb++].e.abi_version = 1;
    for (size_t i = 0; i < nb; i++) {
        if (kvi_register_engine(k, &broken[i].e) != KVI_E_INVALID)
            fail_msg("malformed engine accepted: %s", broken[i].what);
    }
    e = fault_engine;
    e.name = "fault2";
    e.raw_query = NULL;
    assert_int_equal(kvi_register_engine(k, &e), KVI_E_INVALID);
    /* Slots without their capability are fine; the name was never taken.
     * (Static: an engine object must outlive the context.) */
    static struct kvi_engine partial;
    partial = fault_engine;
    partial.name = "fault2";
    partial.caps = KVI_CAP_COUNTERS;
    partial.raw_query = NULL;
    partial.keys = NULL;
    partial.remove_chunk = NULL;
    partial.ttl = NULL;
    assert_int_equal(kvi_register_engine(k, &partial), KVI_OK);
    assert_int_equal(kvi_add_url(k, "fault2://"), KVI_OK);
}

static void test_add_url_rejects_unknown_option_naming_it(void **state)
{
    fx *f = F;
    kvi *k = f->k;
    int opens = fs.calls[OP_OPEN];
    assert_int_equal(kvi_add_url(k, "fault:opt://host/?mode=x&bogus_option=1"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "bogus_option"));
    assert_int_equal(fs.calls[OP_OPEN], opens);
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(k, "fault:opt", &c), KVI_E_UNKNOWN_ENGINE);

    assert_int_equal(kvi_add_url(k, "fault:opt://host/?timeout=soon"), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "timeout"));

    /* The engine's own and the common options are accepted and visible. */
    assert_int_equal(kvi_add_url(k, "fault:opt://host/?mode=x&timeout=250&connect_timeout=120"
                                    "&lazy=yes"),
                     KVI_OK);
    assert_int_equal(fs.seen_timeout_ms, 250);
    assert_int_equal(fs.seen_connect_timeout_ms, 120);
    assert_int_equal(fs.seen_lazy, 1);
}

static void test_add_url_rejects_duplicate_id(void **state)
{
    fx *f = F;
    kvi *k = f->k;
    assert_int_equal(kvi_add_url(k, "fault://"), KVI_OK);
    assert_int_equal(kvi_add_url(k, "fault:dup://"), KVI_OK);
    int opens = fs.calls[OP_OPEN];
    assert_int_equal(kvi_add_url(k, "fault://other:2/"), KVI_E_EXISTS);
    assert_int_equal(kvi_add_url(k, "fault:dup://"), KVI_E_EXISTS);
    assert_non_null(strstr(kvi_errmsg(k), "fault:dup"));
    assert_int_equal(kvi_add_url(k, "fault:grp://"), KVI_E_EXISTS);
    assert_int_equal(fs.calls[OP_OPEN], opens);
    /* The first definitions are untouched. */
    fs.next = KVI_OK;
    assert_int_equal(kvi_ping(k, "fault"), KVI_OK);
    assert_int_equal(kvi_ping(k, "fault:dup"), KVI_OK);
}

static void test_unknown_scheme_is_module_missing_naming_engine_and_file(void **state)
{
    fx *f = F;
    kvi *k = f->k;
    char dir[] = "/tmp/kvi-faults-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(kvi_set_module_path(k, dir), KVI_OK);
    kvi_status st = kvi_add_url(k, "nosuchengine://host/");
    rmdir(dir);
    assert_int_equal(st, KVI_E_MODULE_MISSING);
    const char *m = kvi_errmsg(k);
    assert_non_null(strstr(m, "nosuchengine"));
    assert_non_null(strstr(m, "kvi_nosuchengine.so"));
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(k, "nosuchengine", &c), KVI_E_UNKNOWN_ENGINE);
    assert_null(c);
}

static void test_open_failure_defines_nothing(void **state)
{
    fx *f = F;
    kvi *k = f->k;
    fs.open_status = KVI_E_CONNECT;
    int closes = fs.calls[OP_CLOSE];
    assert_int_equal(kvi_add_url(k, "fault:bad://host/?mode=failopen"), KVI_E_CONNECT);
    assert_non_null(strstr(kvi_errmsg(k), "fault:bad"));
    /* close() releases what a half-done open() acquired. */
    assert_int_equal(fs.calls[OP_CLOSE], closes + 1);
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(k, "fault:bad", &c), KVI_E_UNKNOWN_ENGINE);
    assert_int_equal(kvi_add_url(k, "fault:bad://host/"), KVI_OK);
}

/* ---- passwords ------------------------------------------------------------------- */

static void assert_no_password_anywhere(fx *f)
{
    const char *m = kvi_errmsg(f->k);
    if (strstr(m, PASSWORD) != NULL)
        fail_msg("password in detail message: %s", m);
    for (int i = 0; i < logs.n; i++)
        if (strstr(logs.line[i], PASSWORD) != NULL)
            fail_msg("password in log line: %s", logs.line[i]);
}

static void test_password_never_in_messages_or_logs(void **state)
{
    fx *f = F;
    kvi *k = f->k;
    kvi_set_slow_threshold(k, 1);
    /* mode=leak: the engine itself puts the password into its errors and
     * logs; the core must scrub them. */
    for (int op = OP_STORE; op < OP_COUNT; op++) {
        fs.next = KVI_E_AUTH;
        assert_int_equal(call_op(f, (enum op)op, BY_ID), KVI_E_AUTH);
        assert_non_null(strstr(kvi_errmsg(k), "fault:grp"));
        assert_no_password_anywhere(f);
    }
    assert_true(logs.n > 0);

    /* Configuration errors of URLs holding a password. */
    const char *urls[] = {
        "fault:p1://alice:" PASSWORD "@host:1/?bogus=1",
        "fault:p2://alice:" PASSWORD "@host:99999/",
        "fault:p3://alice:" PASSWORD "@host:1/?timeout=" PASSWORD,
        "fault:grp://alice:" PASSWORD "@host:1/",
        "fault:p4://alice:" PASSWORD "@host:1/?mode=failopen",
        "fault:p5://alice:" PASSWORD "@host:1/?mode=leak&x=" PASSWORD,
        "nosuch:p6://alice:" PASSWORD "@host:1/",
        "fault:p7://alice:" PASSWORD "@[::1/",
    };
    fs.open_status = KVI_E_AUTH;
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        kvi_status st = kvi_add_url(k, urls[i]);
        if (st == KVI_OK)
            fail_msg("URL %zu was accepted", i);
        assert_true(strlen(kvi_errmsg(k)) > 0);
        assert_no_password_anywhere(f);
    }
}

/* ---- detail messages are per thread and per context ------------------------------- */

struct errmsg_probe {
    kvi *k;
    char seen[256];
};

static void *read_errmsg(void *arg)
{
    struct errmsg_probe *p = arg;
    snprintf(p->seen, sizeof p->seen, "%s", kvi_errmsg(p->k));
    return NULL;
}

static void test_errmsg_is_per_thread_and_per_context(void **state)
{
    fx *f = F;
    fs.next = KVI_E_IO;
    assert_int_equal(kvi_conn_ping(f->c), KVI_E_IO);
    assert_non_null(strstr(kvi_errmsg(f->k), "injected"));
    struct errmsg_probe p = {.k = f->k};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_errmsg, &p), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(p.seen, "");
    kvi *other = NULL;
    assert_int_equal(kvi_new(&other), KVI_OK);
    assert_string_equal(kvi_errmsg(other), "");
    kvi_free(other);
    assert_non_null(strstr(kvi_errmsg(f->k), "injected"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_every_engine_status_reaches_the_caller),
        T(test_outputs_are_empty_after_error_even_if_engine_wrote),
        T(test_outputs_are_zeroed_before_the_engine_sees_them),
        T(test_failed_values_are_safe_to_free_twice),
        T(test_engine_ok_without_reply_is_internal_error),
        T(test_error_detail_names_the_engine_id),
        T(test_engine_ok_fetch_without_value_is_empty_value),
        T(test_stats_count_ops_errors_and_misses),
        T(test_slow_ops_are_counted_and_logged),
        T(test_calls_are_timed_only_with_a_log_hook_or_a_threshold),
        T(test_invalid_arguments_never_reach_the_engine),
        T(test_sub_reaches_the_engine_as_negated_add),
        T(test_empty_glob_lists_everything),
        T(test_missing_capability_is_unsupported_without_engine_call),
        T(test_register_engine_rejects_duplicates_and_malformed),
        T(test_add_url_rejects_unknown_option_naming_it),
        T(test_add_url_rejects_duplicate_id),
        T(test_unknown_scheme_is_module_missing_naming_engine_and_file),
        T(test_open_failure_defines_nothing),
        T(test_password_never_in_messages_or_logs),
        T(test_errmsg_is_per_thread_and_per_context),
    };
#undef T
    return cmocka_run_group_tests_name("core_faults", tests, NULL, NULL);
}
