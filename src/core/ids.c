/*
 * ids.c -- engine ids and their handles: defining an id from a URL (the
 * engine's open() runs outside the context lock while the id is reserved),
 * finding a handle by id without a lock (the list is append-only until
 * kvi_free() and each handle is published complete, with a release store),
 * the implicit local:// default, iteration, and releasing every handle.
 */
#include <stdio.h>
#include <string.h>

#include "core/ids.h"
#include "core/options.h"
#include "core/registry.h"

/* Wipes and frees the secrets kept to scrub messages. */
static void wipe_secrets(kvi *k, struct kvi_conn *c)
{
    char *s[2] = {c->secret, c->secret2};
    for (size_t i = 0; i < 2; i++)
        if (s[i] != NULL) {
            memset(s[i], 0, strlen(s[i]));
            kvi__free(k, s[i]);
        }
    c->secret = c->secret2 = NULL;
}

/* The value of the first option of u that holds a password (its name ends
 * in "password", as kvi_url_format_redacted hides it), or NULL. */
static const char *option_secret(const kvi_url *u)
{
    for (size_t i = 0; i < u->noptions; i++) {
        size_t nl = strlen(u->options[i].name);
        if (nl >= 8 && strcmp(u->options[i].name + nl - 8, "password") == 0 &&
            u->options[i].value != NULL && u->options[i].value[0] != '\0')
            return u->options[i].value;
    }
    return NULL;
}

static void conn_destroy(kvi *k, struct kvi_conn *c)
{
    if (c->engine->close != NULL)
        c->engine->close(c);
    kvi__options_free(k, c);
    kvi__free(k, c->priv);
    kvi__free(k, c->id);
    wipe_secrets(k, c);
    kvi__free(k, c);
}

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
    wipe_secrets(k, c);
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
    kvi_status st = kvi__engine_get_locked(k, u->scheme, &e);
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
    const char *secret2 = option_secret(u);
    c->secret2 = secret2 ? kvi__strdup(k, secret2) : NULL;
    c->priv = kvi__calloc(k, 1, e->conn_size ? e->conn_size : 1);
    if (c->id == NULL || c->priv == NULL || (u->password != NULL && c->secret == NULL) ||
        (secret2 != NULL && c->secret2 == NULL)) {
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
        kvi__error(k, st, "%s: cannot open: %s", c->id, kvi_strerror(st));
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

void kvi__ids_free(kvi *k)
{
    struct kvi_conn *c = atomic_load(&k->conns);
    while (c != NULL) {
        struct kvi_conn *next = atomic_load(&c->next);
        conn_destroy(k, c);
        c = next;
    }
    atomic_store(&k->conns, NULL);
}
