/*
 * libevent.c -- kvi's non-blocking batches on a libevent event_base (see
 * include/kvi/adapters/libevent.h).  One event per pending batch: its
 * descriptor with the events the batch waits for and its deadline as the
 * timeout; a step that changes the descriptor gets a new event.
 */
#include <stdlib.h>
#include <time.h>

#include "kvi/adapters/libevent.h"

struct kvi_event_run {
    struct event_base *base;
    kvi_batch *b;
    kvi_batch_done_fn done;
    void *ud;
    struct event *ev;
    int fd;
    int ended;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_done(void *ud, kvi_batch *b)
{
    struct kvi_event_run *r = ud;
    r->ended = 1;
    if (r->done != NULL)
        r->done(r->ud, b);
    /* Ended by kvi_batch_cancel outside the loop's step: the event runs
     * once more, at once, to release the adapter. */
    if (r->ev != NULL)
        event_active(r->ev, EV_TIMEOUT, 0);
}

static void on_event(evutil_socket_t fd, short what, void *arg);

/* Arms r's event for w; -1 when libevent cannot (the batch is canceled). */
static int arm(struct kvi_event_run *r, const kvi_wait *w)
{
    if (r->ev == NULL || r->fd != w->fd) {
        if (r->ev != NULL)
            event_free(r->ev);
        r->fd = w->fd;
        r->ev = event_new(r->base, w->fd, 0, on_event, r);
        if (r->ev == NULL)
            return -1;
    }
    short what = (short)(((w->events & KVI_WAIT_READ) ? EV_READ : 0) |
                         ((w->events & KVI_WAIT_WRITE) ? EV_WRITE : 0));
    event_del(r->ev);
    event_assign(r->ev, r->base, w->fd, what, on_event, r);
    struct timeval tv, *tvp = NULL;
    if (w->deadline_ms != 0) {
        int64_t left = w->deadline_ms - now_ms();
        if (left < 0)
            left = 0;
        tv.tv_sec = (time_t)(left / 1000);
        tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
        tvp = &tv;
    }
    return event_add(r->ev, tvp);
}

static void finish(struct kvi_event_run *r)
{
    if (r->ev != NULL)
        event_free(r->ev);
    free(r);
}

/* One step after the descriptor was ready or the deadline came. */
static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct kvi_event_run *r = arg;
    (void)fd;
    (void)what;
    if (r->ended) { /* canceled meanwhile */
        finish(r);
        return;
    }
    kvi_wait w;
    int s = kvi_batch_resume(r->b, &w);
    if (s == 0 && arm(r, &w) != 0)
        kvi_batch_cancel(r->b);
    if (s != 0 || r->ended)
        finish(r);
}

int kvi_event_batch_run(struct event_base *base, kvi_batch *b, uint32_t timeout_ms,
                        kvi_batch_done_fn done, void *ud)
{
    if (base == NULL || b == NULL)
        return -1;
    struct kvi_event_run *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    r->base = base;
    r->b = b;
    r->done = done;
    r->ud = ud;
    r->fd = -1;
    kvi_wait w;
    int s = kvi_batch_start(b, timeout_ms, on_done, r, &w);
    if (s < 0) {
        free(r);
        return -1;
    }
    if (s == 1) {
        finish(r);
        return 0;
    }
    if (arm(r, &w) != 0) {
        kvi_batch_cancel(b);
        finish(r);
    }
    return 0;
}
