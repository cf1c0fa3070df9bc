/*
 * libuv.c -- kvi's non-blocking batches on a libuv loop (see
 * include/kvi/adapters/libuv.h).  A pending batch has a uv_poll_t on its
 * descriptor (a new one when a step changes the descriptor; libuv binds a
 * poll handle to one) and a uv_timer_t for its deadline; both are closed
 * when it ends and the adapter's memory is freed by the last close.
 */
#include <stdlib.h>
#include <time.h>

#include "kvi/adapters/libuv.h"

struct kvi_uv_run;

/* One poll handle: its own allocation, since closing is asynchronous. */
struct kvi_uv_poll {
    uv_poll_t h;
    struct kvi_uv_run *r;
};

struct kvi_uv_run {
    uv_loop_t *loop;
    kvi_batch *b;
    kvi_batch_done_fn done;
    void *ud;
    struct kvi_uv_poll *poll; /* NULL when none is open */
    int fd;
    uv_timer_t timer;
    int timer_open;
    int ended;   /* the batch has ended */
    int closing; /* handles being closed; freed when the last one is */
    int open_handles;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_closed(uv_handle_t *h)
{
    struct kvi_uv_run *r = h->data;
    if (h != (uv_handle_t *)&r->timer)
        free((struct kvi_uv_poll *)(void *)h);
    if (--r->open_handles == 0 && r->closing)
        free(r);
}

static void close_poll(struct kvi_uv_run *r)
{
    if (r->poll != NULL) {
        uv_poll_stop(&r->poll->h);
        uv_close((uv_handle_t *)&r->poll->h, on_closed);
        r->poll = NULL;
    }
}

/* Releases r: its handles are closed, r freed by the last close. */
static void finish(struct kvi_uv_run *r)
{
    if (r->closing)
        return;
    r->closing = 1;
    close_poll(r);
    if (r->timer_open) {
        uv_timer_stop(&r->timer);
        uv_close((uv_handle_t *)&r->timer, on_closed);
    }
    if (r->open_handles == 0)
        free(r);
}

static void step(struct kvi_uv_run *r);

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    step(((struct kvi_uv_poll *)(void *)h)->r);
}

static void on_timer(uv_timer_t *t)
{
    step(t->data);
}

static void on_done(void *ud, kvi_batch *b)
{
    struct kvi_uv_run *r = ud;
    kvi_batch_done_fn done = r->done;
    void *done_ud = r->ud;
    r->ended = 1;
    /* The handles go first: libuv lets one poll handle watch a descriptor,
     * and the callback may start the next batch on the same connection. */
    finish(r);
    if (done != NULL)
        done(done_ud, b);
}

/* Arms the poll and the timer for w; -1 when libuv refuses. */
static int arm(struct kvi_uv_run *r, const kvi_wait *w)
{
    if (r->poll == NULL || r->fd != w->fd) {
        close_poll(r);
        struct kvi_uv_poll *p = malloc(sizeof *p);
        if (p == NULL)
            return -1;
        p->r = r;
        if (uv_poll_init(r->loop, &p->h, w->fd) != 0) {
            free(p);
            return -1;
        }
        p->h.data = r;
        r->open_handles++;
        r->poll = p;
        r->fd = w->fd;
    }
    int ev = ((w->events & KVI_WAIT_READ) ? UV_READABLE : 0) |
             ((w->events & KVI_WAIT_WRITE) ? UV_WRITABLE : 0);
    if (uv_poll_start(&r->poll->h, ev, on_poll) != 0)
        return -1;
    uv_timer_stop(&r->timer);
    if (w->deadline_ms != 0) {
        int64_t left = w->deadline_ms - now_ms();
        if (uv_timer_start(&r->timer, on_timer, left > 0 ? (uint64_t)left : 0, 0) != 0)
            return -1;
    }
    return 0;
}

static void step(struct kvi_uv_run *r)
{
    if (r->ended || r->closing)
        return;
    kvi_wait w;
    int s = kvi_batch_resume(r->b, &w);
    if (s == 0 && arm(r, &w) != 0)
        kvi_batch_cancel(r->b); /* ends it: on_done releases r */
}

int kvi_uv_batch_run(uv_loop_t *loop, kvi_batch *b, uint32_t timeout_ms, kvi_batch_done_fn done,
                     void *ud)
{
    if (loop == NULL || b == NULL)
        return -1;
    struct kvi_uv_run *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    r->loop = loop;
    r->b = b;
    r->done = done;
    r->ud = ud;
    r->fd = -1;
    if (uv_timer_init(loop, &r->timer) != 0) {
        free(r);
        return -1;
    }
    r->timer.data = r;
    r->timer_open = 1;
    r->open_handles = 1;
    kvi_wait w;
    int s = kvi_batch_start(b, timeout_ms, on_done, r, &w);
    if (s < 0) {
        r->ended = 1;
        finish(r);
        return -1;
    }
    if (s == 0 && arm(r, &w) != 0)
        kvi_batch_cancel(b);
    return 0;
}
