/*
 * registry.c -- the engines a context knows: registration (with the checks
 * of an engine object: ABI version, name, slots against capability bits,
 * option table), lookup by scheme, loading a module on a scheme's first use
 * (module.c), and the descriptions of an engine's options.
 */
#include <string.h>

#include "core/module.h"
#include "core/options.h"
#include "core/registry.h"

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
    if ((engine->caps & KVI_CAP_ITERATE) && (engine->keys == NULL || engine->remove_chunk == NULL))
        return kvi__error(k, KVI_E_INVALID, "engine '%s' reports iteration without keys/remove_chunk",
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

/* See registry.h. */
kvi_status kvi__engine_get_locked(kvi *k, const char *scheme, const struct kvi_engine **out)
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
    kvi_status st = kvi__engine_get_locked(k, scheme, &e);
    pthread_mutex_unlock(&k->config_lock);
    if (st != KVI_OK)
        return st;
    return kvi__option_describe(e, index, out);
}

void kvi__registry_free(kvi *k)
{
    struct kvi__engine_entry *e = k->engines;
    while (e != NULL) {
        struct kvi__engine_entry *next = e->next;
        kvi__module_unload(e->dl_handle);
        kvi__free(k, e);
        e = next;
    }
    k->engines = NULL;
    kvi__free(k, k->module_path);
    k->module_path = NULL;
}
