/*
 * deep.c -- RESP2 replies of any depth up to KVI_REDIS_DEEP_MAX (see
 * deep.h).  Bytes accumulate in buf; complete items are consumed from the
 * front, an incomplete one waits for more bytes (its header is parsed again,
 * its body is not copied twice).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deep.h"

/* Most elements one array may announce (more is refused, not allocated). */
#define MAX_ELEMENTS (1u << 24)

struct frame {
    redisReply *arr;
    size_t filled;
};

struct kvi_redis_deep {
    char *buf;
    size_t len, cap;
    redisReply *root;
    struct frame stack[KVI_REDIS_DEEP_MAX];
    int depth;
};

/* See deep.h. */
struct kvi_redis_deep *kvi__redis_deep_new(void)
{
    return calloc(1, sizeof(struct kvi_redis_deep));
}

/* See deep.h. */
void kvi__redis_deep_free(struct kvi_redis_deep *d)
{
    if (d == NULL)
        return;
    freeReplyObject(d->root);
    free(d->buf);
    free(d);
}

static redisReply *new_reply(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    if (r != NULL)
        r->type = type;
    return r;
}

static redisReply *new_string(int type, const char *p, size_t n)
{
    redisReply *r = new_reply(type);
    if (r == NULL)
        return NULL;
    r->str = malloc(n + 1);
    if (r->str == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->str, p, n);
    r->str[n] = '\0';
    r->len = n;
    return r;
}

/* Strict decimal of a header line ("-1" allowed). */
static int parse_ll(const char *p, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    unsigned long long v = 0;
    if (n > 0 && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 19)
        return -1;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > (unsigned long long)9223372036854775807LL)
        return -1;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

/* Attaches item to the open array, or makes it the root. */
static void attach(struct kvi_redis_deep *d, redisReply *item)
{
    if (d->depth == 0) {
        d->root = item;
        return;
    }
    struct frame *f = &d->stack[d->depth - 1];
    f->arr->element[f->filled++] = item;
}

/* Closes the arrays that are full; 1 when the whole reply is complete. */
static int close_full(struct kvi_redis_deep *d)
{
    while (d->depth > 0 && d->stack[d->depth - 1].filled == d->stack[d->depth - 1].arr->elements)
        d->depth--;
    return d->depth == 0;
}

/* Consumes complete items from d->buf[*pos..len): 1 done, 0 more, -1 error. */
static int parse(struct kvi_redis_deep *d, size_t *pos, size_t max_str, char *err, size_t errlen)
{
    while (*pos < d->len) {
        const char *p = d->buf + *pos;
        size_t avail = d->len - *pos;
        const char *cr = NULL;
        for (size_t i = 1; i + 1 < avail; i++)
            if (p[i] == '\r' && p[i + 1] == '\n') {
                cr = p + i;
                break;
            }
        if (cr == NULL)
            return 0;
        size_t line = (size_t)(cr - p) - 1; /* after the type byte */
        size_t next = (size_t)(cr - p) + 2;
        redisReply *item = NULL;
        long long n = 0;
        switch (p[0]) {
        case '+':
        case '-':
            item = new_string(p[0] == '+' ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR, p + 1, line);
            break;
        case ':':
            if (parse_ll(p + 1, line, &n) != 0)
                goto bad;
            if ((item = new_reply(REDIS_REPLY_INTEGER)) != NULL)
                item->integer = n;
            break;
        case '$':
            if (parse_ll(p + 1, line, &n) != 0 || n < -1)
                goto bad;
            if (n == -1) {
                item = new_reply(REDIS_REPLY_NIL);
                break;
            }
            if ((unsigned long long)n > max_str) {
                snprintf(err, errlen, "reply announces a string longer than %zu bytes", max_str);
                return -1;
            }
            if (avail - next < (size_t)n + 2)
                return 0;
            if (p[next + (size_t)n] != '\r' || p[next + (size_t)n + 1] != '\n')
                goto bad;
            item = new_string(REDIS_REPLY_STRING, p + next, (size_t)n);
            next += (size_t)n + 2;
            break;
        case '*':
            if (parse_ll(p + 1, line, &n) != 0 || n < -1 || n > (long long)MAX_ELEMENTS)
                goto bad;
            if (n == -1) {
                item = new_reply(REDIS_REPLY_NIL);
                break;
            }
            if (n > 0 && d->depth == KVI_REDIS_DEEP_MAX) {
                snprintf(err, errlen, "reply nests deeper than %d levels", KVI_REDIS_DEEP_MAX);
                return -1;
            }
            item = new_reply(REDIS_REPLY_ARRAY);
            if (item != NULL && n > 0) {
                item->element = calloc((size_t)n, sizeof *item->element);
                if (item->element == NULL) {
                    free(item);
                    item = NULL;
                }
            }
            if (item == NULL)
                break;
            item->elements = (size_t)n;
            *pos += next;
            attach(d, item);
            if (n == 0) {
                if (close_full(d))
                    return 1;
                continue;
            }
            /* Open it: its elements follow. */
            d->stack[d->depth++] = (struct frame){item, 0};
            continue;
        default:
            goto bad;
        }
        if (item == NULL) {
            snprintf(err, errlen, "out of memory reading a reply");
            return -1;
        }
        *pos += next;
        attach(d, item);
        if (close_full(d))
            return 1;
    }
    return 0;
bad:
    snprintf(err, errlen, "malformed reply");
    return -1;
}

/* See deep.h. */
int kvi__redis_deep_feed(struct kvi_redis_deep *d, const char *data, size_t len, size_t max_str,
                         redisReply **out, char *err, size_t errlen)
{
    if (len > 0 && d->len + len > d->cap) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap < d->len + len)
            cap *= 2;
        char *nb = realloc(d->buf, cap);
        if (nb == NULL) {
            snprintf(err, errlen, "out of memory reading a reply");
            return -1;
        }
        d->buf = nb;
        d->cap = cap;
    }
    if (len > 0) {
        memcpy(d->buf + d->len, data, len);
        d->len += len;
    }
    size_t pos = 0;
    int r = parse(d, &pos, max_str, err, errlen);
    if (pos > 0) {
        memmove(d->buf, d->buf + pos, d->len - pos);
        d->len -= pos;
    }
    if (r == 1) {
        *out = d->root;
        d->root = NULL;
    }
    return r;
}
