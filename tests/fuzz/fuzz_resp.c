/*
 * fuzz_resp.c -- the redis engine's own RESP2 reply reader (deep.c, for raw
 * replies of any depth).
 *
 * The first input byte picks chunk sizes; the rest is fed once whole and
 * once in those chunks.  Checks, besides "no crash, no leak": both feeds
 * agree (complete / needs more / refused) and, when complete, build the
 * same reply tree; no string is longer than the limit; arrays nest at most
 * KVI_REDIS_DEEP_MAX levels.
 */
#include <string.h>

#include "engines/redis/deep.h"
#include "fuzz.h"

#define MAX_STR 4096

/* hiredis's freeReplyObject, so that the target needs only its header:
 * deep.c builds its trees with malloc as hiredis 0.14 does. */
void freeReplyObject(void *reply)
{
    redisReply *r = reply;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ARRAY && r->element != NULL) {
        for (size_t i = 0; i < r->elements; i++)
            freeReplyObject(r->element[i]);
        free(r->element);
    }
    free(r->str);
    free(r);
}

static int same(const redisReply *a, const redisReply *b, int depth)
{
    FUZZ_CHECK(depth <= KVI_REDIS_DEEP_MAX + 1);
    if (a->type != b->type || a->integer != b->integer || a->len != b->len ||
        a->elements != b->elements)
        return 0;
    if (a->str != NULL || b->str != NULL) {
        if (a->str == NULL || b->str == NULL || memcmp(a->str, b->str, a->len) != 0)
            return 0;
        FUZZ_CHECK(a->len <= MAX_STR && a->str[a->len] == '\0');
    }
    for (size_t i = 0; i < a->elements; i++)
        if (!same(a->element[i], b->element[i], depth + 1))
            return 0;
    return 1;
}

/* Feeds data in chunks of sizes from seed (0: all at once). */
static int feed(const uint8_t *data, size_t size, unsigned seed, redisReply **out)
{
    struct kvi_redis_deep *d = kvi__redis_deep_new();
    char err[128];
    int r = 0;
    size_t pos = 0;
    FUZZ_CHECK(d != NULL);
    while (r == 0 && pos < size) {
        size_t n = seed == 0 ? size - pos : 1 + (seed + pos) % 7;
        if (n > size - pos)
            n = size - pos;
        r = kvi__redis_deep_feed(d, (const char *)data + pos, n, MAX_STR, out, err, sizeof err);
        pos += n;
    }
    kvi__redis_deep_free(d);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536)
        return 0;
    unsigned seed = data[0] % 13 + 1;
    redisReply *whole = NULL, *chunked = NULL;
    int a = feed(data + 1, size - 1, 0, &whole);
    int b = feed(data + 1, size - 1, seed, &chunked);
    FUZZ_CHECK(a == b);
    if (a == 1)
        FUZZ_CHECK(same(whole, chunked, 0));
    if (a == 1) {
        freeReplyObject(whole);
        freeReplyObject(chunked);
    }
    return 0;
}
