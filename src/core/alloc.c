/*
 * alloc.c -- memory through a context's allocator: the core's kvi__malloc
 * family, the engines' kvi_engine_malloc family and the value buffers
 * handed to applications (kvi_value_alloc/kvi_value_set).  The default
 * allocator is libc's.
 */
#include <stdlib.h>
#include <string.h>

#include "core/types.h"

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

const kvi_allocator kvi__libc_allocator = {libc_malloc, libc_realloc, libc_free, NULL};

/* With the default allocator libc is called directly: no hook call and
 * wrapper per value handed out or entry stored. */
void *kvi__malloc(const kvi *k, size_t size)
{
    if (k->alloc.malloc_fn == libc_malloc)
        return malloc(size ? size : 1);
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
    if (k->alloc.free_fn == libc_free)
        free(ptr);
    else if (ptr != NULL)
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
