/* reply.c -- typed reply trees (raw queries, key listings) and values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

struct kvi_reply {
    kvi_reply_type type;
    int64_t integer;
    char *str; /* STRING, STATUS, ERROR: len bytes + NUL */
    size_t len;
    kvi_reply **elems; /* ARRAY */
    size_t count;
    size_t cap;
};

static kvi_reply *reply_new(kvi_reply_type type)
{
    kvi_reply *r = calloc(1, sizeof *r);
    if (r != NULL)
        r->type = type;
    return r;
}

kvi_reply *kvi_reply_new_nil(void)
{
    return reply_new(KVI_REPLY_NIL);
}

kvi_reply *kvi_reply_new_integer(int64_t v)
{
    kvi_reply *r = reply_new(KVI_REPLY_INTEGER);
    if (r != NULL)
        r->integer = v;
    return r;
}

kvi_reply *kvi_reply_new_string(kvi_reply_type type, const void *data, size_t len)
{
    if (type != KVI_REPLY_STRING && type != KVI_REPLY_STATUS && type != KVI_REPLY_ERROR)
        return NULL;
    if ((data == NULL && len > 0) || len == SIZE_MAX)
        return NULL;
    kvi_reply *r = reply_new(type);
    if (r == NULL)
        return NULL;
    r->str = malloc(len + 1);
    if (r->str == NULL) {
        free(r);
        return NULL;
    }
    if (len > 0)
        memcpy(r->str, data, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

kvi_reply *kvi_reply_new_array(size_t capacity_hint)
{
    if (capacity_hint > SIZE_MAX / sizeof(kvi_reply *))
        return NULL;
    kvi_reply *r = reply_new(KVI_REPLY_ARRAY);
    if (r == NULL || capacity_hint == 0)
        return r;
    r->elems = malloc(capacity_hint * sizeof *r->elems);
    if (r->elems == NULL) {
        free(r);
        return NULL;
    }
    r->cap = capacity_hint;
    return r;
}

kvi_status kvi_reply_append(kvi_reply *array, kvi_reply *element)
{
    if (array == NULL || element == NULL || array->type != KVI_REPLY_ARRAY)
        return KVI_E_INVALID;
    if (array->count == array->cap) {
        if (array->cap > SIZE_MAX / 2 / sizeof(kvi_reply *))
            return KVI_E_NOMEM;
        size_t ncap = array->cap ? array->cap * 2 : 8;
        kvi_reply **n = realloc(array->elems, ncap * sizeof *n);
        if (n == NULL)
            return KVI_E_NOMEM;
        array->elems = n;
        array->cap = ncap;
    }
    array->elems[array->count++] = element;
    return KVI_OK;
}

kvi_reply_type kvi_reply_type_of(const kvi_reply *r)
{
    return r ? r->type : KVI_REPLY_NIL;
}

int64_t kvi_reply_integer(const kvi_reply *r)
{
    return (r && r->type == KVI_REPLY_INTEGER) ? r->integer : 0;
}

const char *kvi_reply_str(const kvi_reply *r, size_t *len)
{
    if (r == NULL || r->str == NULL) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = r->len;
    return r->str;
}

size_t kvi_reply_count(const kvi_reply *r)
{
    return (r && r->type == KVI_REPLY_ARRAY) ? r->count : 0;
}

const kvi_reply *kvi_reply_element(const kvi_reply *r, size_t i)
{
    if (r == NULL || r->type != KVI_REPLY_ARRAY || i >= r->count)
        return NULL;
    return r->elems[i];
}

void kvi_reply_free(kvi_reply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        kvi_reply_free(r->elems[i]);
    free(r->elems);
    free(r->str);
    free(r);
}

/* ---- values ------------------------------------------------------------ */

void kvi_value_free(kvi_value *v)
{
    if (v == NULL)
        return;
    if (v->free_fn_ == kvi__libc_allocator.free_fn)
        free(v->data);
    else if (v->data != NULL && v->free_fn_ != NULL)
        v->free_fn_(v->free_ud_, v->data);
    v->data = NULL;
    v->len = 0;
    v->free_fn_ = NULL;
    v->free_ud_ = NULL;
}
