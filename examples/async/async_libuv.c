/*
 * async_libuv.c -- kvi's non-blocking batches on a libuv loop
 * (docs/async.md): N operations on ID (default 10000), two chains of
 * batches of 100 in flight at once, each next batch started from the
 * previous one's done callback.
 *
 *     kvi-async-libuv URL ID [N]      e.g. redis://127.0.0.1:6379/ redis
 *
 * Prints "N ops: OK ok, F failed" and exits 0 when none failed.
 */
#include <stdlib.h>

#include "async_loop.h"
#include "kvi/adapters/libuv.h"

static uv_loop_t g_loop;

static int start_uv(struct async_chain *ch)
{
    return kvi_uv_batch_run(&g_loop, ch->b, 5000, async_done, ch);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s URL ID [N]\n", argv[0]);
        return 2;
    }
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, argv[1]) != KVI_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], k ? kvi_errmsg(k) : "out of memory");
        kvi_free(k);
        return 1;
    }
    long n = argc > 3 ? atol(argv[3]) : 10000;
    uv_loop_init(&g_loop);
    struct async_chain ch[2];
    for (int i = 0; i < 2; i++) {
        ch[i] = (struct async_chain){NULL, argv[2], 0, n / 2, 0, 0, i, start_uv};
        kvi_batch_new(k, &ch[i].b);
        if (async_fill(&ch[i]) && start_uv(&ch[i]) != 0)
            ch[i].failed = n / 2;
    }
    uv_run(&g_loop, UV_RUN_DEFAULT);
    long ok = ch[0].ok + ch[1].ok, failed = ch[0].failed + ch[1].failed;
    printf("%ld ops: %ld ok, %ld failed\n", ok + failed, ok, failed);
    for (int i = 0; i < 2; i++)
        kvi_batch_free(ch[i].b);
    uv_loop_close(&g_loop);
    kvi_free(k);
    return failed == 0 && ok == n ? 0 : 1;
}
