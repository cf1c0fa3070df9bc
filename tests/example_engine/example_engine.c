/*
 * example_engine.c -- "example", a small in-memory engine written against
 * include/kvi/engine.h alone (no src/ header, no kvi__ symbol), to show how
 * an engine is made; docs/engines/writing.md walks through it.  It is
 * registered by the application with kvi_register_engine() and passes the
 * conformance suite (tests/example_engine/CMakeLists.txt).
 *
 * One hash table per connection behind one mutex: simple, and every slot is
 * atomic with respect to the others, which the counters and the
 * conditional writes need.  Expiry is read from the context's clock
 * (kvi_now_ms), so a test may replace it and need not sleep.
 */
#include "example_engine.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

/* ---- options: declared, parsed by the core ------------------------------ */

struct ex_options {
    int64_t buckets; /* hash buckets of the table */
};

static const kvi_option ex_option_table[] = {
    {"buckets", KVI_OPT_INT, "1024", 16, 1 << 20, NULL, offsetof(struct ex_options, buckets),
     "hash buckets of the table (chains grow beyond that)"},
    KVI_OPTION_END,
};

/* ---- per-connection state (conn_size bytes, zeroed by the core) --------- */

struct ex_item {
    struct ex_item *next;
    size_t key_len, val_len;
    int64_t expire_at_ms; /* context clock; 0 = never */
    char *val;            /* val_len bytes, allocated apart so a store can swap it */
    char key[];           /* key_len bytes */
};

struct ex_conn {
    pthread_mutex_t lock;
    int lock_ready;
    struct ex_item **buckets;
    size_t nbuckets;
};

static struct ex_conn *ex(kvi_conn *c)
{
    return kvi_conn_priv(c);
}

static int64_t now_ms(kvi_conn *c)
{
    return kvi_now_ms(kvi_conn_context(c));
}

static int live(const struct ex_item *it, int64_t now)
{
    return it->expire_at_ms == 0 || now < it->expire_at_ms;
}

/* FNV-1a over the key bytes. */
static size_t bucket_of(const struct ex_conn *e, const void *key, size_t key_len)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < key_len; i++)
        h = (h ^ ((const unsigned char *)key)[i]) * 1099511628211u;
    return (size_t)(h % e->nbuckets);
}

static void item_free(kvi_conn *c, struct ex_item *it)
{
    kvi_engine_free(c, it->val);
    kvi_engine_free(c, it);
}

/* The link pointing at key's live item, or NULL.  An expired item met on
 * the way is unlinked and freed (lazy expiry).  Under the lock. */
static struct ex_item **find(kvi_conn *c, const void *key, size_t key_len, int64_t now)
{
    struct ex_conn *e = ex(c);
    struct ex_item **pp = &e->buckets[bucket_of(e, key, key_len)];
    while (*pp != NULL) {
        struct ex_item *it = *pp;
        if (!live(it, now)) {
            *pp = it->next;
            item_free(c, it);
            continue;
        }
        if (it->key_len == key_len && memcmp(it->key, key, key_len) == 0)
            return pp;
        pp = &it->next;
    }
    return NULL;
}

static int64_t expiry_at(int64_t now, int64_t expire_s)
{
    return expire_s > 0 ? now + expire_s * 1000 : 0;
}

/* Writes val as key's value with expire_s, creating the item when missing.
 * Nothing changes when memory is short.  Under the lock. */
static kvi_status put(kvi_conn *c, const void *key, size_t key_len, const void *val, size_t val_len,
                      int64_t expire_at_ms, int64_t now)
{
    char *copy = kvi_engine_malloc(c, val_len);
    if (copy == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory for a %zu-byte value", val_len);
    if (val_len > 0)
        memcpy(copy, val, val_len);
    struct ex_item **pp = find(c, key, key_len, now);
    struct ex_item *it = pp != NULL ? *pp : NULL;
    if (it == NULL) {
        it = kvi_engine_malloc(c, sizeof *it + key_len);
        if (it == NULL) {
            kvi_engine_free(c, copy);
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory for a new key");
        }
        memcpy(it->key, key, key_len);
        it->key_len = key_len;
        it->val = NULL;
        struct ex_conn *e = ex(c);
        size_t b = bucket_of(e, key, key_len);
        it->next = e->buckets[b];
        e->buckets[b] = it;
    }
    kvi_engine_free(c, it->val);
    it->val = copy;
    it->val_len = val_len;
    it->expire_at_ms = expire_at_ms;
    return KVI_OK;
}

/* ---- open / close -------------------------------------------------------- */

static kvi_status ex_open(kvi_conn *c, const kvi_url *url)
{
    struct ex_conn *e = ex(c);
    const struct ex_options *opt = kvi_conn_options(c);

    /* The core parsed the options; what is left is the URL's shape. */
    if (url->nhosts > 0 || url->database != NULL || url->user != NULL || url->has_password)
        return kvi_engine_error(c, KVI_E_INVALID,
                                "the example engine takes no host, database or user (write "
                                "example:// or example:GROUP://)");
    e->nbuckets = (size_t)opt->buckets;
    e->buckets = kvi_engine_malloc(c, e->nbuckets * sizeof *e->buckets);
    if (e->buckets == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory for %zu buckets", e->nbuckets);
    memset(e->buckets, 0, e->nbuckets * sizeof *e->buckets);
    if (pthread_mutex_init(&e->lock, NULL) != 0)
        return kvi_engine_error(c, KVI_E_NOMEM, "cannot create a mutex");
    e->lock_ready = 1;
    return KVI_OK;
}

/* Also called after a failed open(): everything is checked before use. */
static void ex_close(kvi_conn *c)
{
    struct ex_conn *e = ex(c);
    for (size_t b = 0; e->buckets != NULL && b < e->nbuckets; b++) {
        struct ex_item *it = e->buckets[b];
        while (it != NULL) {
            struct ex_item *next = it->next;
            item_free(c, it);
            it = next;
        }
    }
    kvi_engine_free(c, e->buckets);
    if (e->lock_ready)
        pthread_mutex_destroy(&e->lock);
}

/* ---- the operations (arguments already checked by the core) ------------- */

static kvi_status ex_store(kvi_conn *c, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_s)
{
    pthread_mutex_lock(&ex(c)->lock);
    int64_t now = now_ms(c);
    kvi_status st = put(c, key, key_len, val, val_len, expiry_at(now, expire_s), now);
    pthread_mutex_unlock(&ex(c)->lock);
    return st;
}

static kvi_status ex_store_nx(kvi_conn *c, const void *key, size_t key_len, const void *val,
                              size_t val_len, int64_t expire_s)
{
    pthread_mutex_lock(&ex(c)->lock);
    int64_t now = now_ms(c);
    kvi_status st = find(c, key, key_len, now) != NULL
                        ? KVI_KEY_EXISTS
                        : put(c, key, key_len, val, val_len, expiry_at(now, expire_s), now);
    pthread_mutex_unlock(&ex(c)->lock);
    return st;
}

static kvi_status ex_fetch(kvi_conn *c, const void *key, size_t key_len, kvi_value *out)
{
    pthread_mutex_lock(&ex(c)->lock);
    struct ex_item **pp = find(c, key, key_len, now_ms(c));
    kvi_status st = pp == NULL ? KVI_NOT_FOUND : kvi_value_set(c, out, (*pp)->val, (*pp)->val_len);
    pthread_mutex_unlock(&ex(c)->lock);
    return st;
}

static kvi_status ex_remove(kvi_conn *c, const void *key, size_t key_len)
{
    pthread_mutex_lock(&ex(c)->lock);
    struct ex_item **pp = find(c, key, key_len, now_ms(c));
    kvi_status st = KVI_NOT_FOUND;
    if (pp != NULL) {
        struct ex_item *it = *pp;
        *pp = it->next;
        item_free(c, it);
        st = KVI_OK;
    }
    pthread_mutex_unlock(&ex(c)->lock);
    return st;
}

/* The counter under key: KVI_OK with *cur (0 and *missing = 1 when there
 * is no key), KVI_E_NOT_A_COUNTER when the value is not a decimal int64. */
static kvi_status counter_of(kvi_conn *c, struct ex_item **pp, int64_t *cur, int *missing)
{
    *cur = 0;
    *missing = pp == NULL;
    if (pp == NULL)
        return KVI_OK;
    if (!kvi_parse_int64((*pp)->val, (*pp)->val_len, cur))
        return kvi_engine_error(c, KVI_E_NOT_A_COUNTER, "the value is not a decimal integer");
    return KVI_OK;
}

/* add and add_bounded: delta applied to key's counter when the result
 * stays in [min, max]; a new counter gets expire_s, an existing one keeps
 * its expiry. */
static kvi_status add_within(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                             int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    pthread_mutex_lock(&ex(c)->lock);
    int64_t now = now_ms(c), cur, next;
    int missing;
    struct ex_item **pp = find(c, key, key_len, now);
    kvi_status st = counter_of(c, pp, &cur, &missing);
    if (st == KVI_OK &&
        ((delta > 0 && cur > INT64_MAX - delta) || (delta < 0 && cur < INT64_MIN - delta)))
        st = kvi_engine_error(c, KVI_E_OVERFLOW, "%lld + %lld leaves the int64 range",
                              (long long)cur, (long long)delta);
    next = cur + (st == KVI_OK ? delta : 0);
    if (st == KVI_OK && (next < min || next > max)) {
        *value = cur;
        st = KVI_OUT_OF_BOUNDS;
    }
    if (st == KVI_OK) {
        char text[21];
        size_t len = kvi_format_int64(next, text);
        int64_t at = missing ? expiry_at(now, expire_s) : (*pp)->expire_at_ms;
        st = put(c, key, key_len, text, len, at, now);
        if (st == KVI_OK)
            *value = next;
    }
    pthread_mutex_unlock(&ex(c)->lock);
    return st;
}

static kvi_status ex_add(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                         int64_t expire_s, int64_t *new_value)
{
    return add_within(c, key, key_len, delta, expire_s, INT64_MIN, INT64_MAX, new_value);
}

static kvi_status ex_add_bounded(kvi_conn *c, const void *key, size_t key_len, int64_t delta,
                                 int64_t expire_s, int64_t min, int64_t max, int64_t *value)
{
    return add_within(c, key, key_len, delta, expire_s, min, max, value);
}

static kvi_status ex_counter_fetch(kvi_conn *c, const void *key, size_t key_len, int64_t *out)
{
    pthread_mutex_lock(&ex(c)->lock);
    int64_t cur;
    int missing;
    struct ex_item **pp = find(c, key, key_len, now_ms(c));
    kvi_status st = counter_of(c, pp, &cur, &missing);
    if (st == KVI_OK && missing)
        st = KVI_NOT_FOUND;
    if (st == KVI_OK)
        *out = cur;
    pthread_mutex_unlock(&ex(c)->lock);
    return st;
}

static kvi_status ex_ttl(kvi_conn *c, const void *key, size_t key_len, int64_t *ttl_s)
{
    pthread_mutex_lock(&ex(c)->lock);
    int64_t now = now_ms(c);
    struct ex_item **pp = find(c, key, key_len, now);
    kvi_status st = pp == NULL ? KVI_NOT_FOUND : KVI_OK;
    if (pp != NULL) /* whole seconds, rounded down (never more than is left); -1 = never */
        *ttl_s = (*pp)->expire_at_ms == 0 ? -1 : ((*pp)->expire_at_ms - now) / 1000;
    pthread_mutex_unlock(&ex(c)->lock);
    return st;
}

/* keys and remove_chunk: every live key matching glob; with out, each is
 * appended to it, otherwise removed and counted in *removed. */
static kvi_status each_match(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply *out,
                             uint64_t *removed)
{
    struct ex_conn *e = ex(c);
    pthread_mutex_lock(&e->lock);
    int64_t now = now_ms(c);
    kvi_status st = KVI_OK;
    for (size_t b = 0; st == KVI_OK && b < e->nbuckets; b++) {
        for (struct ex_item **pp = &e->buckets[b]; st == KVI_OK && *pp != NULL;) {
            struct ex_item *it = *pp;
            int dead = !live(it, now);
            if (!dead && kvi_glob_match(glob, glob_len, it->key, it->key_len)) {
                if (out != NULL) {
                    kvi_reply *r = kvi_reply_new_string(KVI_REPLY_STRING, it->key, it->key_len);
                    st = r != NULL ? kvi_reply_append(out, r) : KVI_E_NOMEM;
                } else {
                    dead = 1;
                    ++*removed;
                }
            }
            if (dead) {
                *pp = it->next;
                item_free(c, it);
            } else {
                pp = &it->next;
            }
        }
    }
    pthread_mutex_unlock(&e->lock);
    return st == KVI_OK ? KVI_OK : kvi_engine_error(c, st, "out of memory listing keys");
}

static kvi_status ex_keys(kvi_conn *c, const char *glob, size_t glob_len, kvi_reply **out)
{
    kvi_reply *arr = kvi_reply_new_array(16);
    if (arr == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory listing keys");
    kvi_status st = each_match(c, glob, glob_len, arr, NULL);
    if (st != KVI_OK) {
        kvi_reply_free(arr);
        return st;
    }
    *out = arr;
    return KVI_OK;
}

static kvi_status ex_remove_chunk(kvi_conn *c, const char *glob, size_t glob_len, uint64_t *removed)
{
    uint64_t n = 0;
    kvi_status st = each_match(c, glob, glob_len, NULL, &n);
    *removed = n;
    return st;
}

static kvi_status ex_ping(kvi_conn *c)
{
    (void)c;
    return KVI_OK; /* no server */
}

const struct kvi_engine kvi_example_engine = {
    .abi_version = KVI_ENGINE_ABI,
    .name = "example",
    .description = "in-memory example engine written against kvi/engine.h alone",
    .caps = KVI_CAP_TTL | KVI_CAP_COUNTERS | KVI_CAP_NEG_COUNTERS | KVI_CAP_BINARY |
            KVI_CAP_ITERATE | KVI_CAP_CONDITIONAL,
    .conn_size = sizeof(struct ex_conn),
    .max_value_len = 0, /* KVI_MAX_VALUE_LEN */
    .open = ex_open,
    .close = ex_close,
    .store = ex_store,
    .fetch = ex_fetch,
    .remove = ex_remove,
    .add = ex_add,
    .counter_fetch = ex_counter_fetch,
    .keys = ex_keys,
    .remove_chunk = ex_remove_chunk,
    .ttl = ex_ttl,
    .ping = ex_ping,
    .add_bounded = ex_add_bounded,
    .store_nx = ex_store_nx,
    .option_table = ex_option_table,
    .options_size = sizeof(struct ex_options),
};
