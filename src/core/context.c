/*
 * context.c -- contexts, engine registration, engine ids and their handles.
 *
 * Definitions are rare and serialised by config_lock; lookups are frequent
 * and lock-free: the list of handles is append-only until kvi_free(), and
 * each new handle is published with a release store after it is complete.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/context.h"
#include "core/module.h"
#include "core/options.h"

/* ---- allocator ---------------------------------------------------------- */

static void *libc_malloc(void *ud, size_t size)
{
    (void)ud;
    return malloc(size);
}

static void *libc_realloc(void *ud, void *ptr, size_t size)
{
    (void)ud;
    return realloc(ptr, size);
}

static void libc_free(void *ud, void *ptr)
{
    (void)ud;
    free(ptr);
}

void *kvi__malloc(const kvi *k, size_t size)
{
    return k->alloc.malloc_fn(k->alloc.ud, size ? size : 1);
}

void *kvi__calloc(const kvi *k, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = kvi__malloc(k, n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void *kvi__realloc(const kvi *k, void *ptr, size_t size)
{
    return k->alloc.realloc_fn(k->alloc.ud, ptr, size ? size : 1);
}

void kvi__free(const kvi *k, void *ptr)
{
    if (ptr != NULL)
        k->alloc.free_fn(k->alloc.ud, ptr);
}

char *kvi__strdup(const kvi *k, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = kvi__malloc(k, n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* ---- context ------------------------------------------------------------ */

static int64_t realtime_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Shared by every context and never freed or changed. */
static struct kvi__hook default_clock = {(void (*)(void))realtime_ms, NULL, 0, NULL};

static void free_hooks(kvi *k, struct kvi__hook *h)
{
    while (h != NULL && h != &default_clock) {
        struct kvi__hook *older = h->older;
        kvi__free(k, h);
        h = older;
    }
}

kvi_status kvi_new(kvi **out)
{
    static const kvi_allocator libc = {libc_malloc, libc_realloc, libc_free, NULL};
    return kvi_new_with_allocator(out, &libc);
}

kvi_status kvi_new_with_allocator(kvi **out, const kvi_allocator *alloc)
{
    if (out == NULL)
        return KVI_E_INVALID;
    *out = NULL;
    if (alloc == NULL || alloc->malloc_fn == NULL || alloc->realloc_fn == NULL ||
        alloc->free_fn == NULL)
        return KVI_E_INVALID;
    kvi *k = alloc->malloc_fn(alloc->ud, sizeof *k);
    if (k == NULL)
        return KVI_E_NOMEM;
    memset(k, 0, sizeof *k);
    k->alloc = *alloc;
    if (pthread_mutex_init(&k->config_lock, NULL) != 0) {
        alloc->free_fn(alloc->ud, k);
        return KVI_E_NOMEM;
    }
    atomic_init(&k->conns, NULL);
    atomic_init(&k->log, NULL);
    atomic_init(&k->slow_us, 100000);
    atomic_init(&k->clock, &default_clock);
    kvi_status st = kvi_register_engine(k, &kvi__engine_local);
    if (st != KVI_OK) {
        kvi_free(k);
        return st;
    }
    *out = k;
    return KVI_OK;
}

static void conn_destroy(kvi *k, struct kvi_conn *c)
{
    if (c->engine->close != NULL)
        c->engine->close(c);
    kvi__options_free(k, c);
    kvi__free(k, c->priv);
    kvi__free(k, c->id);
    if (c->secret != NULL) {
        memset(c->secret, 0, strlen(c->secret));
        kvi__free(k, c->secret);
    }
    kvi__free(k, c);
}

void kvi_free(kvi *k)
{
    if (k == NULL)
        return;
    struct kvi_conn *c = atomic_load(&k->conns);
    while (c != NULL) {
        struct kvi_conn *next = atomic_load(&c->next);
        conn_destroy(k, c);
        c = next;
    }
    struct kvi__engine_entry *e = k->engines;
    while (e != NULL) {
        struct kvi__engine_entry *next = e->next;
        kvi__module_unload(e->dl_handle);
        kvi__free(k, e);
        e = next;
    }
    kvi__free(k, k->module_path);
    free_hooks(k, atomic_load(&k->log));
    free_hooks(k, atomic_load(&k->clock));
    free_hooks(k, k->retired);
    pthread_mutex_destroy(&k->config_lock);
    kvi_allocator a = k->alloc;
    a.free_fn(a.ud, k);
}

kvi_status kvi_set_module_path(kvi *k, const char *path)
{
    if (k == NULL)
        return KVI_E_INVALID;
    kvi__clear_error();
    if (path == NULL)
        return kvi__error(k, KVI_E_INVALID, "module path is NULL");
    char *copy = kvi__strdup(k, path);
    if (copy == NULL)
        return kvi__error(k, KVI_E_NOMEM, "out of memory copying the module path");
    pthread_mutex_lock(&k->config_lock);
    kvi__free(k, k->module_path);
    k->module_path = copy;
    pthread_mutex_unlock(&k->config_lock);
    return KVI_OK;
}

/* Publishes a new hook in *slot (NULL hook for fn == NULL when nullable),
 * keeping the one it replaces until kvi_free(). */
static kvi_status set_hook(kvi *k, struct kvi__hook *_Atomic *slot, void (*fn)(void), void *ud,
                           int level)
{
    struct kvi__hook *h = NULL;
    if (fn != NULL) {
        h = kvi__malloc(k, sizeof *h);
        if (h == NULL)
            return kvi__error(k, KVI_E_NOMEM, "out of memory setting a hook");
        h->fn = fn;
        h->ud = ud;
        h->level = level;
        h->older = NULL;
    }
    pthread_mutex_lock(&k->config_lock);
    struct kvi__hook *old = atomic_exchange_explicit(slot, h, memory_order_acq_rel);
    if (old != NULL && old != &default_clock) {
        old->older = k->retired;
        k->retired = old;
    }
    pthread_mutex_unlock(&k->config_lock);
    return KVI_OK;
}

kvi_status kvi_set_log(kvi *k, kvi_log_fn fn, void *ud, kvi_log_level max_level)
{
    if (k == NULL)
        return KVI_E_INVALID;
    kvi__clear_error();
    return set_hook(k, &k->log, (void (*)(void))fn, ud, (int)max_level);
}

void kvi_set_slow_threshold(kvi *k, uint64_t threshold_us)
{
    if (k != NULL)
        atomic_store(&k->slow_us, threshold_us);
}

kvi_status kvi_set_clock(kvi *k, kvi_clock_fn fn, void *ud)
{
    if (k == NULL)
        return KVI_E_INVALID;
    kvi__clear_error();
    if (fn == NULL) {
        pthread_mutex_lock(&k->config_lock);
        struct kvi__hook *old = atomic_exchange(&k->clock, &default_clock);
        if (old != &default_clock) {
            old->older = k->retired;
            k->retired = old;
        }
        pthread_mutex_unlock(&k->config_lock);
        return KVI_OK;
    }
    return set_hook(k, &k->clock, (void (*)(void))fn, ud, 0);
}

int64_t kvi_now_ms(kvi *k)
{
    if (k == NULL)
        return realtime_ms(NULL);
    const struct kvi__hook *h = atomic_load_explicit(&k->clock, memory_order_acquire);
    return ((kvi_clock_fn)h->fn)(h->ud);
}

/* ---- engines ------------------------------------------------------------ */

static int valid_scheme(const char *s)
{
    if (s == NULL || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return 0;
    }
    return n <= 64;
}

static const struct kvi_engine *engine_find_locked(kvi *k, const char *name, size_t len)
{
    for (struct kvi__engine_entry *e = k->engines; e != NULL; e = e->next)
        if (strlen(e->engine->name) == len && memcmp(e->engine->name, name, len) == 0)
            return e->engine;
    return NULL;
}

static kvi_status register_locked(kvi *k, const struct kvi_engine *engine, void *dl_handle)
{
    kvi__clear_error();
    if (engine == NULL || engine->abi_version == 0 || engine->abi_version > KVI_ENGINE_ABI)
        return kvi__error(k, KVI_E_INVALID, "engine has an unsupported ABI version");
    if (!valid_scheme(engine->name))
        return kvi__error(k, KVI_E_INVALID, "engine name must match [a-z][a-z0-9_]*");
    if (engine->open == NULL || engine->store == NULL || engine->fetch == NULL ||
        engine->remove == NULL)
        return kvi__error(k, KVI_E_INVALID,
                          "engine '%s' lacks a required slot (open, store, fetch, remove)",
                          engine->name);
    if ((engine->caps & KVI_CAP_COUNTERS) && (engine->add == NULL || engine->counter_fetch == NULL))
        return kvi__error(k, KVI_E_INVALID, "engine '%s' reports counters without add/counter_fetch",
                          engine->name);
    if ((engine->caps & KVI_CAP_ITERATE) && (engine->keys == NULL || engine->remove_glob == NULL))
        return kvi__error(k, KVI_E_INVALID, "engine '%s' reports iteration without keys/remove_glob",
                          engine->name);
    if ((engine->caps & KVI_CAP_RAW_QUERY) && engine->raw_query == NULL)
        return kvi__error(k, KVI_E_INVALID, "engine '%s' reports raw queries without raw_query",
                          engine->name);
    if ((engine->caps & KVI_CAP_CONDITIONAL) &&
        (engine->abi_version < 2 || engine->add_bounded == NULL || engine->store_nx == NULL))
        return kvi__error(k, KVI_E_INVALID,
                          "engine '%s' reports conditional operations without add_bounded/"
                          "store_nx (ABI 2)",
                          engine->name);
    if ((engine->caps & KVI_CAP_TTL) && engine->ttl == NULL)
        return kvi__error(k, KVI_E_INVALID, "engine '%s' reports TTL without ttl", engine->name);
    kvi_status st = kvi__options_check(k, engine);
    if (st != KVI_OK)
        return st;
    if (engine_find_locked(k, engine->name, strlen(engine->name)) != NULL)
        return kvi__error(k, KVI_E_EXISTS, "engine '%s' is already registered", engine->name);
    struct kvi__engine_entry *e = kvi__calloc(k, 1, sizeof *e);
    if (e == NULL)
        return kvi__error(k, KVI_E_NOMEM, "out of memory registering engine '%s'", engine->name);
    e->engine = engine;
    e->dl_handle = dl_handle;
    struct kvi__engine_entry **tail = &k->engines;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = e;
    return KVI_OK;
}

kvi_status kvi_register_engine(kvi *k, const struct kvi_engine *engine)
{
    if (k == NULL || engine == NULL)
        return KVI_E_INVALID;
    pthread_mutex_lock(&k->config_lock);
    kvi_status st = register_locked(k, engine, NULL);
    pthread_mutex_unlock(&k->config_lock);
    return st;
}

/* The engine for scheme, loading its module on first use.  Locked. */
static kvi_status engine_get_locked(kvi *k, const char *scheme, const struct kvi_engine **out)
{
    const struct kvi_engine *e = engine_find_locked(k, scheme, strlen(scheme));
    if (e != NULL) {
        *out = e;
        return KVI_OK;
    }
    void *dl = NULL;
    kvi_status st = kvi__module_load(k, k->module_path, scheme, &e, &dl);
    if (st != KVI_OK)
        return st;
    if (e->name == NULL || strcmp(e->name, scheme) != 0) {
        kvi__module_unload(dl);
        return kvi__error(k, KVI_E_MODULE_MISSING,
                          "engine module for '%s' registers engine '%s' instead", scheme,
                          e->name ? e->name : "(no name)");
    }
    st = register_locked(k, e, dl);
    if (st != KVI_OK) {
        kvi__module_unload(dl);
        return st;
    }
    *out = e;
    return KVI_OK;
}

kvi_status kvi_engine_option(kvi *k, const char *scheme, size_t index, kvi_option_info *out)
{
    if (k == NULL)
        return KVI_E_INVALID;
    kvi__clear_error();
    if (scheme == NULL || out == NULL)
        return kvi__error(k, KVI_E_INVALID, "%s is NULL", scheme == NULL ? "scheme" : "output");
    if (!valid_scheme(scheme))
        return kvi__error(k, KVI_E_INVALID, "engine name must match [a-z][a-z0-9_]*");
    const struct kvi_engine *e = NULL;
    pthread_mutex_lock(&k->config_lock);
    kvi_status st = engine_get_locked(k, scheme, &e);
    pthread_mutex_unlock(&k->config_lock);
    if (st != KVI_OK)
        return st;
    return kvi__option_describe(e, index, out);
}

/* ---- engine ids --------------------------------------------------------- */

struct kvi_conn *kvi__conn_find(kvi *k, const char *id)
{
    for (struct kvi_conn *c = atomic_load_explicit(&k->conns, memory_order_acquire); c != NULL;
         c = atomic_load_explicit(&c->next, memory_order_acquire))
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

static int pending_has(const kvi *k, const char *id)
{
    for (const struct kvi__pending *p = k->pending; p != NULL; p = p->next)
        if (strcmp(p->id, id) == 0)
            return 1;
    return 0;
}

static void pending_drop(kvi *k, const struct kvi__pending *mine)
{
    for (struct kvi__pending **pp = &k->pending; *pp != NULL; pp = &(*pp)->next)
        if (*pp == mine) {
            *pp = mine->next;
            return;
        }
}

/* Frees a handle whose open() never ran. */
static void conn_discard(kvi *k, struct kvi_conn *c)
{
    if (c->secret != NULL)
        memset(c->secret, 0, strlen(c->secret));
    kvi__free(k, c->secret);
    kvi__free(k, c->id);
    kvi__options_free(k, c);
    kvi__free(k, c->priv);
    kvi__free(k, c);
}

/*
 * Defines u->id.  Called with config_lock held; returns with it held, but
 * drops it around the engine's open(), which may connect to servers: no
 * network I/O happens under the context-wide lock.  While open() runs the id
 * is reserved in k->pending, so a concurrent definition gets KVI_E_EXISTS.
 */
static kvi_status define_locked(kvi *k, const kvi_url *u)
{
    if (kvi__conn_find(k, u->id) != NULL || pending_has(k, u->id))
        return kvi__error(k, KVI_E_EXISTS, "engine id '%s' is already defined", u->id);
    const struct kvi_engine *e = NULL;
    kvi_status st = engine_get_locked(k, u->scheme, &e);
    if (st != KVI_OK)
        return st;
    struct kvi_conn *c = kvi__calloc(k, 1, sizeof *c);
    if (c == NULL)
        return kvi__error(k, KVI_E_NOMEM, "out of memory defining '%s'", u->id);
    c->k = k;
    c->engine = e;
    c->caps = e->caps;
    c->max_value_len = e->max_value_len ? e->max_value_len : KVI_MAX_VALUE_LEN;
    if (c->max_value_len > KVI_MAX_VALUE_LEN)
        c->max_value_len = KVI_MAX_VALUE_LEN;
    c->id = kvi__strdup(k, u->id);
    c->secret = u->password ? kvi__strdup(k, u->password) : NULL;
    c->priv = kvi__calloc(k, 1, e->conn_size ? e->conn_size : 1);
    if (c->id == NULL || c->priv == NULL || (u->password != NULL && c->secret == NULL)) {
        conn_discard(k, c);
        return kvi__error(k, KVI_E_NOMEM, "out of memory defining '%s'", u->id);
    }
    st = kvi__options_apply(k, c, u);
    if (st != KVI_OK) {
        conn_discard(k, c);
        return st;
    }

    struct kvi__pending mine = {c->id, k->pending};
    k->pending = &mine;
    pthread_mutex_unlock(&k->config_lock);
    kvi__clear_error();
    st = e->open(c, u);
    if (st != KVI_OK && !kvi__error_is_set())
        kvi_engine_error(c, st, "cannot open: %s", kvi_strerror(st));
    pthread_mutex_lock(&k->config_lock);
    pending_drop(k, &mine);
    if (st != KVI_OK) {
        /* open() may have failed half-way: close() releases what it did. */
        conn_destroy(k, c);
        return st;
    }
    _Atomic(struct kvi_conn *) *tail = &k->conns;
    struct kvi_conn *cur;
    while ((cur = atomic_load_explicit(tail, memory_order_acquire)) != NULL)
        tail = &cur->next;
    atomic_store_explicit(tail, c, memory_order_release);
    return KVI_OK;
}

kvi_status kvi_add_url(kvi *k, const char *url)
{
    if (k == NULL || url == NULL)
        return k ? kvi__error(k, KVI_E_INVALID, "URL is NULL") : KVI_E_INVALID;
    kvi__clear_error();
    char err[256];
    kvi_url *u = NULL;
    kvi_status st = kvi_url_parse(url, &u, err, sizeof err);
    if (st != KVI_OK)
        return kvi__error(k, st, "%s", err);
    pthread_mutex_lock(&k->config_lock);
    st = define_locked(k, u);
    pthread_mutex_unlock(&k->config_lock);
    if (st != KVI_OK && u->password != NULL) {
        /* Engines must not print it; make sure anyway. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kvi_errmsg(k));
        kvi__set_errmsg(k, u->password, msg);
    }
    if (st == KVI_OK)
        kvi__discard_error(); /* e.g. a failover host that did not answer */
    kvi_url_free(u);
    return st;
}

static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > KVI_MAX_ID_LEN)
        return 0;
    const char *colon = strchr(id, ':');
    size_t slen = colon ? (size_t)(colon - id) : n;
    if (slen == 0 || !(id[0] >= 'a' && id[0] <= 'z'))
        return 0;
    for (size_t i = 0; i < slen; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return 0;
    }
    if (colon == NULL)
        return 1;
    if (colon[1] == '\0')
        return 0;
    for (const char *p = colon + 1; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

kvi_status kvi_conn_get(kvi *k, const char *id, kvi_conn **out)
{
    if (out != NULL)
        *out = NULL;
    if (k == NULL)
        return KVI_E_INVALID;
    if (id == NULL || out == NULL)
        return kvi__error(k, KVI_E_INVALID, "%s is NULL", id == NULL ? "engine id" : "output");
    struct kvi_conn *c = kvi__conn_find(k, id);
    if (c != NULL) {
        *out = c;
        return KVI_OK;
    }
    if (!valid_id(id))
        return kvi__error(k, KVI_E_INVALID,
                          "malformed engine id (expected scheme or scheme:group)");
    if (strcmp(id, "local") == 0) {
        /* The embedded engine's default connection exists on first use. */
        pthread_mutex_lock(&k->config_lock);
        kvi_status st = KVI_OK;
        while (pending_has(k, id)) {
            /* Another thread is opening it: wait for its outcome. */
            pthread_mutex_unlock(&k->config_lock);
            kvi_sleep_ms(1);
            pthread_mutex_lock(&k->config_lock);
        }
        c = kvi__conn_find(k, id);
        if (c == NULL) {
            kvi_url *u = NULL;
            st = kvi_url_parse("local://", &u, NULL, 0);
            if (st == KVI_OK)
                st = define_locked(k, u);
            kvi_url_free(u);
            c = kvi__conn_find(k, id);
        }
        pthread_mutex_unlock(&k->config_lock);
        if (st != KVI_OK)
            return st;
        *out = c;
        return KVI_OK;
    }
    return kvi__error(k, KVI_E_UNKNOWN_ENGINE, "engine id '%s' is not defined (add a URL for it)",
                      id);
}

kvi_status kvi_foreach_conn(kvi *k, void (*fn)(void *ud, kvi_conn *c), void *ud)
{
    if (k == NULL || fn == NULL)
        return KVI_E_INVALID;
    for (struct kvi_conn *c = atomic_load_explicit(&k->conns, memory_order_acquire); c != NULL;
         c = atomic_load_explicit(&c->next, memory_order_acquire))
        fn(ud, c);
    return KVI_OK;
}

/* ---- handle accessors and engine services -------------------------------- */

const char *kvi_conn_id(const kvi_conn *c)
{
    return c ? c->id : NULL;
}

const char *kvi_conn_engine(const kvi_conn *c)
{
    return c ? c->engine->name : NULL;
}

uint32_t kvi_conn_caps(const kvi_conn *c)
{
    return c ? c->caps : 0;
}

void kvi_conn_set_caps(kvi_conn *c, uint32_t caps)
{
    /* Only bits the engine's slots can serve: the core relies on them. */
    uint32_t needs_slot =
        KVI_CAP_COUNTERS | KVI_CAP_ITERATE | KVI_CAP_RAW_QUERY | KVI_CAP_TTL | KVI_CAP_CONDITIONAL;
    c->caps = (caps & ~needs_slot) | (caps & c->engine->caps & needs_slot);
}

void *kvi_conn_priv(kvi_conn *c)
{
    return c->priv;
}

kvi *kvi_conn_context(kvi_conn *c)
{
    return c->k;
}

uint32_t kvi_conn_connect_timeout_ms(const kvi_conn *c)
{
    return c->connect_timeout_ms;
}

uint32_t kvi_conn_timeout_ms(const kvi_conn *c)
{
    return c->timeout_ms;
}

int kvi_conn_lazy(const kvi_conn *c)
{
    return c->lazy;
}

const void *kvi_conn_options(const kvi_conn *c)
{
    return c->options;
}

void *kvi_engine_malloc(kvi_conn *c, size_t size)
{
    return kvi__malloc(c->k, size);
}

void *kvi_engine_realloc(kvi_conn *c, void *ptr, size_t size)
{
    return kvi__realloc(c->k, ptr, size);
}

void kvi_engine_free(kvi_conn *c, void *ptr)
{
    kvi__free(c->k, ptr);
}

char *kvi_engine_strdup(kvi_conn *c, const char *s)
{
    return kvi__strdup(c->k, s);
}

char *kvi_value_alloc(kvi_conn *c, kvi_value *out, size_t len)
{
    if (c == NULL || out == NULL || len == SIZE_MAX)
        return NULL;
    char *p = kvi__malloc(c->k, len + 1);
    if (p == NULL)
        return NULL;
    p[len] = '\0';
    out->data = p;
    out->len = len;
    out->free_fn_ = c->k->alloc.free_fn;
    out->free_ud_ = c->k->alloc.ud;
    return p;
}

kvi_status kvi_value_set(kvi_conn *c, kvi_value *out, const void *data, size_t len)
{
    if (data == NULL && len > 0)
        return KVI_E_INVALID;
    char *p = kvi_value_alloc(c, out, len);
    if (p == NULL)
        return KVI_E_NOMEM;
    if (len > 0)
        memcpy(p, data, len);
    return KVI_OK;
}
