/*
 * async_loop.h -- what the two adapter examples share: N operations on one
 * engine id in batches of 100 (a store, then a fetch of the same key, so
 * that each fetch checks the store before it), a chain of batches kept
 * going from the done callback, and the check of every result.
 */
#ifndef KVI_EXAMPLE_ASYNC_LOOP_H
#define KVI_EXAMPLE_ASYNC_LOOP_H

#include <stdio.h>
#include <string.h>

#include "kvi/kvi.h"

#define ASYNC_PER_BATCH 100

struct async_chain {
    kvi_batch *b;
    const char *id;
    long next, total; /* ops added so far, ops wanted */
    long ok, failed;
    int chain;        /* which chain, for the keys */
    int (*start)(struct async_chain *ch); /* the adapter's run */
};

/* Fills the chain's batch with its next ops; 0 when there are none left. */
static int async_fill(struct async_chain *ch)
{
    kvi_batch_clear(ch->b);
    char key[48], val[48];
    for (int i = 0; i < ASYNC_PER_BATCH / 2 && ch->next < ch->total; i++, ch->next += 2) {
        int kn = snprintf(key, sizeof key, "async:%d:%ld", ch->chain, ch->next);
        int vn = snprintf(val, sizeof val, "value %ld", ch->next);
        kvi_batch_store(ch->b, ch->id, key, (size_t)kn, val, (size_t)vn, 60);
        kvi_batch_fetch(ch->b, ch->id, key, (size_t)kn);
    }
    return kvi_batch_count(ch->b) > 0;
}

/* The done callback: checks the batch, then starts the next one. */
static void async_done(void *ud, kvi_batch *b)
{
    struct async_chain *ch = ud;
    for (size_t i = 0; i < kvi_batch_count(b); i += 2) {
        size_t len = 0;
        const char *v = kvi_batch_value(b, i + 1, &len);
        char want[48];
        int wn = snprintf(want, sizeof want, "value %ld", ch->next - (long)kvi_batch_count(b) + (long)i);
        if (kvi_batch_status(b, i) == KVI_OK && v != NULL && len == (size_t)wn &&
            memcmp(v, want, len) == 0)
            ch->ok += 2;
        else
            ch->failed += 2;
    }
    if (async_fill(ch) && ch->start(ch) != 0)
        ch->failed += (long)kvi_batch_count(ch->b);
}

#endif /* KVI_EXAMPLE_ASYNC_LOOP_H */
