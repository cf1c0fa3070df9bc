/*
 * async_single.c -- one operation at a time without blocking, driven by a
 * plain poll() loop (docs/async.md, "One operation"): stores KEY, adds 1 to
 * KEY:n, fetches KEY, each started with kvi_start_* and resumed when its
 * descriptor is ready.
 *
 *   kvi-async-single URL ID KEY        e.g. redis://127.0.0.1:6379/ redis k
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kvi/kvi.h"

/* Waits for what w asks, up to its deadline (CLOCK_MONOTONIC ms). */
static void wait_for(const kvi_wait *w)
{
    int timeout = -1;
    if (w->deadline_ms != 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t left = w->deadline_ms - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        timeout = left > 0 ? (int)left : 0;
    }
    struct pollfd p = {w->fd, 0, 0};
    if (w->events & KVI_WAIT_READ)
        p.events |= POLLIN;
    if (w->events & KVI_WAIT_WRITE)
        p.events |= POLLOUT;
    (void)poll(&p, w->fd >= 0 ? 1 : 0, timeout);
}

/* Drives the started operation (r: what kvi_start_* returned) to its end;
 * its status. */
static kvi_status finish(kvi_batch *b, int r, kvi_wait *w, const char *what)
{
    int waits = 0;
    while (r == 0) {
        wait_for(w); /* an event loop would do other work here */
        waits++;
        r = kvi_batch_resume(b, w);
    }
    kvi_status st = r == 1 ? kvi_batch_status(b, 0) : KVI_E_INVALID;
    printf("%-6s %s after %d wait%s%s%s\n", what, kvi_status_name(st), waits, waits == 1 ? "" : "s",
           KVI_STATUS_IS_ERROR(st) ? ": " : "", KVI_STATUS_IS_ERROR(st) ? kvi_batch_errmsg(b, 0) : "");
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s URL ID KEY\n", argv[0]);
        return 2;
    }
    const char *id = argv[2], *key = argv[3];
    kvi *k = NULL;
    kvi_batch *b = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, argv[1]) != KVI_OK ||
        kvi_batch_new(k, &b) != KVI_OK) {
        fprintf(stderr, "kvi-async-single: %s\n", k ? kvi_errmsg(k) : "out of memory");
        kvi_free(k);
        return 1;
    }
    char ckey[300];
    snprintf(ckey, sizeof ckey, "%s:n", key);
    kvi_wait w;
    int bad = 0;
    bad |= finish(b, kvi_start_store(b, id, key, strlen(key), "hello", 5, 0, 1000, NULL, NULL, &w),
                  &w, "store") != KVI_OK;
    if (finish(b, kvi_start_add(b, id, ckey, strlen(ckey), 1, 0, 1000, NULL, NULL, &w), &w,
               "add") == KVI_OK)
        printf("       %s = %lld\n", ckey, (long long)kvi_batch_integer(b, 0));
    else
        bad = 1;
    if (finish(b, kvi_start_fetch(b, id, key, strlen(key), 1000, NULL, NULL, &w), &w, "fetch") ==
        KVI_OK) {
        size_t len = 0;
        const char *v = kvi_batch_value(b, 0, &len);
        printf("       %s = %.*s\n", key, (int)len, v);
    } else {
        bad = 1;
    }
    kvi_batch_free(b);
    kvi_free(k);
    return bad;
}
