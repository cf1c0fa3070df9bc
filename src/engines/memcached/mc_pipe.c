/*
 * mc_pipe.c -- the memcached engine's own pipelined path for batches:
 * kvi's non-blocking binary-protocol connections (one per server of the
 * pool and run, pooled per process) and the operations as small state
 * machines.  libmemcached has neither a non-blocking API nor a status per
 * pipelined write, so batches do not go through it; the single calls
 * still do (mc_slots.c), and this file reproduces their semantics exactly:
 *
 *   fetch, counter_fetch  GET, decoded as a single fetch (stamp, envelope)
 *   store                 SET
 *   remove                GET, then DELETE when present (expired: NOT_FOUND)
 *   add, add_bounded      GET (its CAS), then SET-with-CAS (or ADD when
 *                         missing); a lost race reads again, up to
 *                         MC_CAS_MAX_TRIES; a bound is refused unwritten
 *   store_nx              ADD; when the server holds an item: GET, and on an
 *                         expired one SET-with-CAS
 *
 * Placement: each key goes to the server libmemcached's own hash names
 * (kvi__mc_server_of on a leased handle: the blocking path's server), keys
 * mapped and values wrapped by the same functions (mc_item.c).
 *
 * Flow: every op whose next request is ready is written to its server's
 * connection (all servers written before any reply is read); each reply,
 * matched by its opaque (the op's index), moves its op on: it ends, or
 * its next request is queued and written with the others after the read.
 * A later op on a key waits until the earlier one on that key has ended,
 * so ops on one key keep the batch's order.
 *
 * Failures: a connection that breaks, times out or is left by a deadline
 * or cancel is closed (never reused); its ops not answered end with the
 * cause, a state change (op->no_resend) whose request may have left with
 * KVI_E_OUTCOME_UNKNOWN; nothing is sent twice.  A pooled connection is
 * checked (poll, no wait) before it is reused, so a connection the server
 * closed while idle is never written to.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mc_engine.h"
#include "mc_wire.h"

/* Idle batch connections kept per process (all servers together). */
#define MP_IDLE_MAX 64u
/* The opaque of a connection's SASL request (ops use their index). */
#define MP_SASL_OPAQUE UINT32_MAX
/* Buffers larger than this are freed when a connection goes idle. */
#define MP_KEEP_BUF (256u << 10)
/* Largest body of a reply that carries no value (a status text). */
#define MP_SMALL_BODY 65536u
/* Bytes read at once (the buffer grows for a bigger reply). */
#define MP_READ_CHUNK 65536u

enum wc_state { WC_CONNECTING, WC_READY, WC_BROKEN };

/* A non-blocking connection to one server. */
struct mc_wc {
    int fd;
    pid_t pid;
    uint32_t server;
    enum wc_state state;
    int auth_wait;      /* the SASL reply is awaited: nothing else leaves */
    size_t auth_end;    /* bytes of wbuf that are the SASL request */
    uint8_t *wbuf;
    size_t wlen, wpos, wcap;
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint64_t queued, sent; /* bytes queued / written since the connection began */
    size_t inflight;       /* requests queued, not answered */
    /* Monotonic time of the last progress: connected, a whole reply read,
     * or a request queued while nothing was in flight (bytes alone are no
     * progress: a server sending one byte a second still times out). */
    int64_t last_ms;
    kvi_status fail_st;    /* WC_BROKEN: why */
    char fail_msg[1024];
    int registered; /* in the run's epoll set, with these events */
    uint32_t reg_events;
    struct mc_wc *next; /* the idle list */
};

enum mp_step { MP_GET, MP_SET, MP_ADD, MP_CAS, MP_DEL };

enum mp_state { MP_WAIT, MP_READY, MP_SENT, MP_DONE };

/* One op of a run. */
struct mp_op {
    kvi_batch_op *op;
    const char *mkey; /* the memcached key: op->key itself, or mbuf */
    uint8_t mkey_len;
    uint8_t mapped;
    uint8_t state;
    uint8_t step;
    uint8_t present, live;
    uint32_t server;
    int32_t next_same; /* the next op on the same key, -1 */
    uint32_t tries;
    uint64_t req_at; /* where its last request starts in its connection's stream */
    uint64_t cas;
    uint32_t flags;
    int64_t expiry_s;
    int64_t next; /* counter: the value to write */
    char mbuf[KVI_MC_KEY_PREFIX_LEN + 2 * KVI_MC_DIGEST_LEN + 1];
};

/* A server a run uses: its breaker entered once, its connection. */
struct mp_server {
    int used;
    int entered; /* 1 entered, -1 refused (every op of it failed at once) */
    int probe;
    kvi_status outcome; /* for the breaker */
    struct mc_wc *wc;
};

struct mp_run {
    kvi_conn *c;
    struct mc_conn *m;
    struct mc_gen *gen;
    struct mp_op *ops;
    size_t n, left;
    uint32_t *queue; /* ops whose next request is ready (FIFO ring of n) */
    size_t qhead, qlen;
    struct mp_server *srv;
    int64_t deadline_ms;
    int epfd; /* async with more than one connection waiting */
    int async;
};

/* ---- connections --------------------------------------------------------- */

/* Clears the SASL request (it holds the password) from wc's buffer. */
static void wc_forget_auth(struct mc_wc *wc)
{
    if (wc->auth_end > 0 && wc->wbuf != NULL) {
        volatile uint8_t *p = wc->wbuf;
        for (size_t i = 0; i < wc->auth_end; i++)
            p[i] = 0;
    }
    wc->auth_end = 0;
}

static void wc_close(kvi_conn *c, struct mc_wc *wc)
{
    if (wc == NULL)
        return;
    wc_forget_auth(wc);
    if (wc->fd >= 0)
        close(wc->fd);
    kvi_engine_free(c, wc->wbuf);
    kvi_engine_free(c, wc->rbuf);
    kvi_engine_free(c, wc);
}

void kvi__mc_pipe_gen_free(kvi_conn *c, struct mc_gen *g)
{
    struct mc_wc *wc = g->wfree;
    while (wc != NULL) {
        struct mc_wc *next = wc->next;
        wc_close(c, wc);
        wc = next;
    }
    g->wfree = NULL;
    g->nwfree = 0;
}

/* 1 when a pooled connection is still fit: nothing to read (no EOF, no
 * stray bytes), no error. */
static int wc_idle_fit(struct mc_wc *wc)
{
    struct pollfd p = {wc->fd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

/* A connection to server s for a run: a pooled one of this process, or a
 * new one whose connect is under way (WC_BROKEN with its reason when it
 * cannot even start). */
static struct mc_wc *wc_take(struct mp_run *r, uint32_t s)
{
    kvi_conn *c = r->c;
    struct mc_gen *g = r->gen;
    for (;;) {
        struct mc_wc *wc = NULL;
        pthread_mutex_lock(&g->lock);
        for (struct mc_wc **pp = &g->wfree; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->server == s) {
                wc = *pp;
                *pp = wc->next;
                g->nwfree--;
                break;
            }
        pthread_mutex_unlock(&g->lock);
        if (wc == NULL)
            break;
        if (wc->pid == g->pid && wc_idle_fit(wc)) {
            wc->next = NULL;
            wc->queued = wc->sent = 0;
            wc->last_ms = kvi_monotonic_ms();
            return wc;
        }
        wc_close(c, wc);
    }
    struct mc_wc *wc = kvi_engine_malloc(c, sizeof *wc);
    if (wc == NULL)
        return NULL;
    memset(wc, 0, sizeof *wc);
    wc->server = s;
    wc->pid = g->pid;
    wc->last_ms = kvi_monotonic_ms();
    wc->state = WC_CONNECTING;
    const struct mc_server *sv = &r->m->servers[s];
    wc->fd = -1;
    if (sv->addrlen == 0) {
        wc->state = WC_BROKEN;
        wc->fail_st = KVI_E_CONNECT;
        snprintf(wc->fail_msg, sizeof wc->fail_msg,
                 "cannot connect to %s: its address could not be resolved when the connection "
                 "was defined",
                 sv->name);
        return wc;
    }
    wc->fd = socket(sv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = -1;
    if (wc->fd >= 0) {
        int one = 1;
        (void)setsockopt(wc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        rc = connect(wc->fd, (const struct sockaddr *)&sv->addr, sv->addrlen);
    }
    if (rc == 0) {
        wc->state = WC_READY;
    } else if (wc->fd < 0 || errno != EINPROGRESS) {
        wc->state = WC_BROKEN;
        wc->fail_st = KVI_E_CONNECT;
        snprintf(wc->fail_msg, sizeof wc->fail_msg, "cannot connect to %s: %s", sv->name,
                 strerror(errno));
        return wc;
    }
    if (r->m->sasl_user != NULL) {
        /* SASL PLAIN first; the ops queued behind it leave only once the
         * server accepted it (a refusal then proves they never ran). */
        const char *user = r->m->sasl_user, *pass = r->m->sasl_pass;
        size_t cap = strlen(user) + strlen(pass) + 2;
        size_t need = kvi__mcw_req_size(0, 5, cap);
        wc->wbuf = kvi_engine_malloc(c, need);
        if (wc->wbuf == NULL) {
            wc_close(c, wc);
            return NULL;
        }
        wc->wcap = need;
        size_t body = kvi__mcw_sasl_plain(wc->wbuf + MCW_HEADER + 5, cap, user, pass);
        kvi__mcw_header(wc->wbuf, MCW_OP_SASL_AUTH, 5, 0, (uint32_t)(5 + body), MP_SASL_OPAQUE,
                        0);
        memcpy(wc->wbuf + MCW_HEADER, "PLAIN", 5);
        wc->wlen = wc->auth_end = MCW_HEADER + 5 + body;
        wc->queued = wc->wlen;
        wc->auth_wait = 1;
        wc->inflight = 1;
    }
    return wc;
}

/* Gives wc back to the pool when it is clean (ready, nothing in flight or
 * unread), else closes it. */
static void wc_give(struct mp_run *r, struct mc_wc *wc)
{
    if (wc == NULL)
        return;
    if (wc->state != WC_READY || wc->inflight != 0 || wc->wpos != wc->wlen || wc->rlen != 0 ||
        wc->auth_wait || wc->pid != r->gen->pid) {
        wc_close(r->c, wc);
        return;
    }
    wc->wlen = wc->wpos = 0;
    wc->registered = 0;
    /* A big batch's buffers are not kept while the connection idles. */
    if (wc->wcap > MP_KEEP_BUF) {
        kvi_engine_free(r->c, wc->wbuf);
        wc->wbuf = NULL;
        wc->wcap = 0;
    }
    if (wc->rcap > MP_KEEP_BUF) {
        kvi_engine_free(r->c, wc->rbuf);
        wc->rbuf = NULL;
        wc->rcap = 0;
    }
    pthread_mutex_lock(&r->gen->lock);
    int keep = r->gen->nwfree < MP_IDLE_MAX;
    if (keep) {
        wc->next = r->gen->wfree;
        r->gen->wfree = wc;
        r->gen->nwfree++;
    }
    pthread_mutex_unlock(&r->gen->lock);
    if (!keep)
        wc_close(r->c, wc);
}

/* Room for len more bytes at the end of wc's write buffer (NULL: no memory). */
static uint8_t *wc_room(kvi_conn *c, struct mc_wc *wc, size_t len)
{
    if (wc->wpos == wc->wlen) {
        wc_forget_auth(wc); /* the SASL request, if any, has left */
        wc->wpos = wc->wlen = 0;
    }
    if (wc->wlen + len > wc->wcap) {
        size_t cap = wc->wcap ? wc->wcap : 4096;
        while (cap < wc->wlen + len)
            cap *= 2;
        uint8_t *nb = kvi_engine_realloc(c, wc->wbuf, cap);
        if (nb == NULL)
            return NULL;
        wc->wbuf = nb;
        wc->wcap = cap;
    }
    return wc->wbuf + wc->wlen;
}

/* The events wc waits for now (0: nothing in flight). */
static short wc_events(const struct mc_wc *wc)
{
    if (wc == NULL || wc->state == WC_BROKEN)
        return 0;
    if (wc->state == WC_CONNECTING)
        return POLLOUT;
    short ev = 0;
    size_t limit = wc->auth_wait ? wc->auth_end : wc->wlen;
    if (wc->wpos < limit)
        ev |= POLLOUT;
    if (wc->inflight > 0)
        ev |= POLLIN;
    return ev;
}

/* ---- ending ops ------------------------------------------------------------ */

static void q_push(struct mp_run *r, uint32_t i)
{
    r->queue[(r->qhead + r->qlen) % r->n] = i;
    r->qlen++;
    r->ops[i].state = MP_READY;
}

/* Ends op i with st (the thread's current message for an error). */
static void op_end(struct mp_run *r, uint32_t i, kvi_status st)
{
    struct mp_op *o = &r->ops[i];
    if (o->state == MP_DONE)
        return;
    if (o->state == MP_SENT && r->srv[o->server].wc != NULL)
        r->srv[o->server].wc->inflight--;
    o->state = MP_DONE;
    r->left--;
    kvi_batch_op_done(r->c, o->op, st);
    if (o->next_same >= 0 && r->ops[o->next_same].state == MP_WAIT)
        q_push(r, (uint32_t)o->next_same);
}

/* Whether op i's last request may have reached the server (a byte of it
 * was written) and it changes state where it must never be sent twice. */
static int op_unknown(const struct mp_run *r, const struct mp_op *o)
{
    const struct mc_wc *wc = r->srv[o->server].wc;
    return o->state == MP_SENT && o->op->no_resend && o->step != MP_GET && wc != NULL &&
           wc->sent > o->req_at;
}

/* Ends every op of server s still open: not answered (sent) with st and
 * msg, a state change that may have left with KVI_E_OUTCOME_UNKNOWN.
 * Ops of s not sent yet end the same way when their turn comes. */
static void server_fail(struct mp_run *r, uint32_t s, kvi_status st, const char *msg)
{
    struct mc_wc *wc = r->srv[s].wc;
    if (wc != NULL && wc->state != WC_BROKEN) {
        wc->state = WC_BROKEN;
        wc->fail_st = st;
        snprintf(wc->fail_msg, sizeof wc->fail_msg, "%s", msg);
        if (wc->fd >= 0 && r->epfd >= 0 && wc->registered)
            (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, wc->fd, NULL);
        wc->registered = 0;
        if (wc->fd >= 0)
            close(wc->fd);
        wc->fd = -1;
    }
    if (r->srv[s].outcome == KVI_OK)
        r->srv[s].outcome = st;
    for (uint32_t i = 0; i < r->n; i++) {
        struct mp_op *o = &r->ops[i];
        if (o->server != s || o->state != MP_SENT)
            continue;
        if (op_unknown(r, o))
            op_end(r, i,
                   kvi_engine_error(r->c, KVI_E_OUTCOME_UNKNOWN,
                                    "%s; this operation was sent and may have been applied", msg));
        else
            op_end(r, i, kvi_engine_error(r->c, st, "%s", msg));
    }
}

/* Ends every open op with st: a deadline (KVI_E_TIMEOUT) or a cancel
 * (KVI_E_CANCELED).  Connections with anything in flight are closed. */
static void run_stop(struct mp_run *r, kvi_status st)
{
    const char *why = st == KVI_E_CANCELED ? "the batch was canceled" : "the batch's deadline passed";
    /* A deadline of the blocking path counts against a server that did not
     * answer, as a single call's timeout does (the non-blocking path leaves
     * the breaker alone on deadline and cancel: the caller chose them).
     * A connection left in the middle is closed, never reused. */
    for (uint32_t s = 0; s < r->m->nservers; s++) {
        struct mc_wc *wc = r->srv[s].wc;
        if (wc_events(wc) == 0)
            continue;
        if (!r->async && st == KVI_E_TIMEOUT && r->srv[s].outcome == KVI_OK)
            r->srv[s].outcome = KVI_E_TIMEOUT;
        wc->state = WC_BROKEN;
        wc->fail_st = st;
        snprintf(wc->fail_msg, sizeof wc->fail_msg, "%s", why);
        if (r->epfd >= 0 && wc->registered)
            (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, wc->fd, NULL);
        wc->registered = 0;
        close(wc->fd);
        wc->fd = -1;
    }
    for (uint32_t i = 0; i < r->n; i++) {
        struct mp_op *o = &r->ops[i];
        if (o->state == MP_DONE)
            continue;
        if (op_unknown(r, o))
            op_end(r, i,
                   kvi_engine_error(r->c, KVI_E_OUTCOME_UNKNOWN,
                                    "%s before the answer to this operation, which was sent "
                                    "and may have been applied",
                                    why));
        else if (o->state == MP_SENT)
            op_end(r, i,
                   kvi_engine_error(r->c, st, "%s before this operation was answered", why));
        else
            op_end(r, i, kvi_engine_error(r->c, st, "%s before this operation was sent", why));
    }
}

/* The status of a reply that is not an answer kvi expects. */
static kvi_status reply_fail(struct mp_run *r, const struct mcw_reply *rp, const char *op)
{
    char text[128];
    size_t n = 0;
    for (size_t i = 0; i < rp->value_len && n + 1 < sizeof text; i++) {
        uint8_t ch = rp->value[i];
        text[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    text[n] = '\0';
    kvi_status st;
    switch (rp->status) {
    case MCW_E2BIG:
        return kvi_engine_error_in(r->c, KVI_E_INVALID, op,
                                   "value too large for the server's item size limit "
                                   "(memcached -I; 1 MiB values need -I 2m): %s",
                                   text);
    case MCW_EINVAL:
        st = KVI_E_INVALID;
        break;
    case MCW_ENOMEM:
        st = KVI_E_STORE_FULL;
        break;
    case MCW_AUTH_ERROR:
    case MCW_AUTH_CONTINUE:
        st = KVI_E_AUTH;
        break;
    case MCW_UNKNOWN_COMMAND:
        st = KVI_E_UNSUPPORTED;
        break;
    default:
        st = KVI_E_BACKEND;
        break;
    }
    return kvi_engine_error_in(r->c, st, op, "%s (memcached status 0x%02x)",
                               n > 0 ? text : "error", (unsigned)rp->status);
}

/* ---- the op machines ------------------------------------------------------ */

static const char *op_name(const kvi_batch_op *op)
{
    switch (op->kind) {
    case KVI_OP_STORE:
        return "store";
    case KVI_OP_FETCH:
        return "fetch";
    case KVI_OP_REMOVE:
        return "remove";
    case KVI_OP_ADD:
        return "add";
    case KVI_OP_ADD_BOUNDED:
        return "add_bounded";
    case KVI_OP_STORE_NX:
        return "store_nx";
    case KVI_OP_COUNTER_FETCH:
        return "counter_fetch";
    default:
        return "batch";
    }
}

/* The mc_key of op o (for the shared decode). */
static void op_key(const struct mp_op *o, struct mc_key *k)
{
    k->key = o->op->key;
    k->key_len = o->op->key_len;
    memcpy(k->mkey, o->mkey, o->mkey_len);
    k->mkey[o->mkey_len] = '\0';
    k->mkey_len = o->mkey_len;
    k->mapped = o->mapped;
}

/* Queues op o's current request on wc; 0, or -1 out of memory. */
static int op_write(struct mp_run *r, uint32_t i, struct mc_wc *wc)
{
    struct mp_op *o = &r->ops[i];
    const kvi_batch_op *op = o->op;
    uint8_t *p;
    size_t len;
    if (o->step == MP_GET || o->step == MP_DEL) {
        len = kvi__mcw_req_size(0, o->mkey_len, 0);
        if ((p = wc_room(r->c, wc, len)) == NULL)
            return -1;
        kvi__mcw_key_req(p, o->step == MP_GET ? MCW_OP_GET : MCW_OP_DELETE, o->mkey, o->mkey_len,
                         i);
    } else {
        const void *val = op->val;
        size_t val_len = op->val_len;
        char text[24];
        if (op->kind == KVI_OP_ADD || op->kind == KVI_OP_ADD_BOUNDED) {
            val_len = kvi_format_int64(o->next, text);
            val = text;
        }
        size_t head = o->mapped ? KVI_MC_WRAP_FIXED + op->key_len : 0;
        len = kvi__mcw_req_size(8, o->mkey_len, head + val_len);
        if (head + val_len > MCW_MAX_BODY || (p = wc_room(r->c, wc, len)) == NULL)
            return -1;
        int64_t now_ms = kvi__mc_now_ms();
        uint32_t flags;
        int64_t exptime;
        if (o->step == MP_CAS && (op->kind == KVI_OP_ADD || op->kind == KVI_OP_ADD_BOUNDED) &&
            o->live) {
            /* Fixed window: keep the recorded expiry and send its time left. */
            flags = o->flags;
            exptime = o->expiry_s ? kvi__mc_server_exptime(o->expiry_s, now_ms) : 0;
        } else {
            kvi__mc_new_expiry(now_ms, op->expire_s, &flags, &exptime);
        }
        uint8_t opcode = o->step == MP_ADD ? MCW_OP_ADD : MCW_OP_SET;
        uint64_t cas = o->step == MP_CAS ? o->cas : 0;
        size_t at = kvi__mcw_store_head(p, opcode, o->mkey, o->mkey_len, head + val_len, flags,
                                        (uint32_t)exptime, cas, i);
        if (head > 0)
            kvi__mc_wrap_header(op->key, op->key_len, p + at);
        if (val_len > 0)
            memcpy(p + at + head, val, val_len);
    }
    o->req_at = wc->queued;
    if (wc->inflight == 0)
        wc->last_ms = kvi_monotonic_ms();
    wc->wlen += len;
    wc->queued += len;
    wc->inflight++;
    o->state = MP_SENT;
    return 0;
}

/* The next request of op i: queued for the next write. */
static void op_next(struct mp_run *r, uint32_t i, enum mp_step step)
{
    r->ops[i].step = (uint8_t)step;
    r->srv[r->ops[i].server].wc->inflight--;
    q_push(r, i);
}

/* After the GET of an add: the write to make, or the op ends. */
static void add_after_read(struct mp_run *r, uint32_t i, const struct mc_item *it)
{
    struct mp_op *o = &r->ops[i];
    const kvi_batch_op *op = o->op;
    const char *name = op_name(op);
    int64_t min = op->kind == KVI_OP_ADD_BOUNDED ? op->min : INT64_MIN;
    int64_t max = op->kind == KVI_OP_ADD_BOUNDED ? op->max : INT64_MAX;
    int64_t old = 0, next = op->delta;
    enum mp_step step;
    if (!it->live) {
        step = it->present ? MP_CAS : MP_ADD;
    } else {
        if (!kvi_parse_int64(it->data, it->len, &old)) {
            op_end(r, i,
                   kvi_engine_error_in(r->c, KVI_E_NOT_A_COUNTER, name,
                                       "value of '%.*s' is not an integer", (int)o->mkey_len,
                                       o->mkey));
            return;
        }
        if (__builtin_add_overflow(old, op->delta, &next)) {
            op_end(r, i,
                   kvi_engine_error_in(r->c, KVI_E_OVERFLOW, name,
                                       "%lld + %lld does not fit in int64", (long long)old,
                                       (long long)op->delta));
            return;
        }
        step = MP_CAS;
    }
    if (next < min || next > max) {
        o->op->integer = old;
        op_end(r, i, KVI_OUT_OF_BOUNDS);
        return;
    }
    o->next = next;
    op_next(r, i, step);
}

static void gave_up(struct mp_run *r, uint32_t i)
{
    op_end(r, i,
           kvi_engine_error_in(r->c, KVI_E_BACKEND, op_name(r->ops[i].op),
                               "gave up after %d conflicting concurrent updates",
                               MC_CAS_MAX_TRIES));
}

/* Op i's reply rp (its opcode already checked against its request). */
static void op_reply(struct mp_run *r, uint32_t i, const struct mcw_reply *rp)
{
    struct mp_op *o = &r->ops[i];
    kvi_batch_op *op = o->op;
    const char *name = op_name(op);
    if (o->step == MP_GET) {
        struct mc_item it;
        memset(&it, 0, sizeof it);
        int64_t now_ms = kvi__mc_now_ms();
        if (rp->status == MCW_OK) {
            struct mc_key k;
            op_key(o, &k);
            it.data = (const char *)rp->value;
            it.len = rp->value_len;
            it.flags = rp->flags;
            it.cas = rp->cas;
            kvi_status st = kvi__mc_decode(r->c, &k, &it, now_ms, name);
            if (st != KVI_OK) {
                op_end(r, i, st);
                return;
            }
        } else if (rp->status != MCW_ENOENT) {
            op_end(r, i, reply_fail(r, rp, name));
            return;
        }
        o->present = (uint8_t)it.present;
        o->live = (uint8_t)it.live;
        o->cas = it.cas;
        o->flags = it.flags;
        o->expiry_s = it.expiry_s;
        switch (op->kind) {
        case KVI_OP_FETCH:
            if (!it.live) {
                op_end(r, i, KVI_NOT_FOUND);
            } else {
                char *p = kvi_batch_op_value_alloc(r->c, op, it.len);
                if (p == NULL) {
                    op_end(r, i, kvi_engine_error(r->c, KVI_E_NOMEM, "out of memory"));
                    return;
                }
                if (it.len > 0)
                    memcpy(p, it.data, it.len);
                op_end(r, i, KVI_OK);
            }
            return;
        case KVI_OP_COUNTER_FETCH:
            if (!it.live)
                op_end(r, i, KVI_NOT_FOUND);
            else if (!kvi_parse_int64(it.data, it.len, &op->integer))
                op_end(r, i,
                       kvi_engine_error(r->c, KVI_E_NOT_A_COUNTER,
                                        "counter_fetch: value of '%.*s' is not an integer",
                                        (int)o->mkey_len, o->mkey));
            else
                op_end(r, i, KVI_OK);
            return;
        case KVI_OP_REMOVE:
            if (!it.present)
                op_end(r, i, KVI_NOT_FOUND);
            else
                op_next(r, i, MP_DEL);
            return;
        case KVI_OP_ADD:
        case KVI_OP_ADD_BOUNDED:
            add_after_read(r, i, &it);
            return;
        case KVI_OP_STORE_NX:
            if (it.live)
                op_end(r, i, KVI_KEY_EXISTS);
            else
                op_next(r, i, it.present ? MP_CAS : MP_ADD);
            return;
        default:
            op_end(r, i, kvi_engine_error(r->c, KVI_E_INTERNAL, "unexpected batch operation"));
            return;
        }
    }
    if (o->step == MP_DEL) {
        if (rp->status == MCW_OK)
            op_end(r, i, o->live ? KVI_OK : KVI_NOT_FOUND);
        else if (rp->status == MCW_ENOENT)
            op_end(r, i, KVI_NOT_FOUND);
        else
            op_end(r, i, reply_fail(r, rp, name));
        return;
    }
    /* SET, ADD, CAS */
    if (rp->status == MCW_OK) {
        if (op->kind == KVI_OP_ADD || op->kind == KVI_OP_ADD_BOUNDED)
            op->integer = o->next;
        op_end(r, i, KVI_OK);
        return;
    }
    int lost = rp->status == MCW_EEXISTS || rp->status == MCW_NOT_STORED ||
               rp->status == MCW_ENOENT;
    if (op->kind == KVI_OP_STORE || !lost) {
        op_end(r, i, reply_fail(r, rp, name));
        return;
    }
    /* Another client changed the item between our read and write (or ADD
     * found one): read again. */
    if (++o->tries >= MC_CAS_MAX_TRIES) {
        gave_up(r, i);
        return;
    }
    op_next(r, i, MP_GET);
}

/* The opcode that answers op o's current request. */
static uint8_t op_opcode(const struct mp_op *o)
{
    switch (o->step) {
    case MP_GET:
        return MCW_OP_GET;
    case MP_DEL:
        return MCW_OP_DELETE;
    case MP_ADD:
        return MCW_OP_ADD;
    default:
        return MCW_OP_SET;
    }
}

/* ---- I/O ------------------------------------------------------------------- */

/* Queues the next request of every ready op on its server's connection
 * (taking or opening it); ops of a broken server end. */
static void run_fill(struct mp_run *r)
{
    while (r->qlen > 0) {
        uint32_t i = r->queue[r->qhead];
        r->qhead = (r->qhead + 1) % r->n;
        r->qlen--;
        struct mp_op *o = &r->ops[i];
        if (o->state != MP_READY)
            continue;
        struct mp_server *sv = &r->srv[o->server];
        if (sv->wc == NULL) {
            sv->wc = wc_take(r, o->server);
            if (sv->wc == NULL) {
                op_end(r, i, kvi_engine_error(r->c, KVI_E_NOMEM, "out of memory"));
                continue;
            }
            if (sv->wc->state == WC_BROKEN && sv->outcome == KVI_OK)
                sv->outcome = sv->wc->fail_st;
        }
        struct mc_wc *wc = sv->wc;
        if (wc->state == WC_BROKEN) {
            op_end(r, i, kvi_engine_error(r->c, wc->fail_st, "%s", wc->fail_msg));
            continue;
        }
        if (op_write(r, i, wc) != 0)
            op_end(r, i, kvi_engine_error(r->c, KVI_E_NOMEM, "out of memory"));
    }
}

/* wc failed: "<what> <server>: <detail>". */
static void wc_broken(struct mp_run *r, struct mc_wc *wc, kvi_status st, const char *what,
                      const char *detail)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s %s: %s", what, r->m->servers[wc->server].name, detail);
    server_fail(r, wc->server, st, msg);
}

/* Writes what wc may write now. */
static void wc_flush(struct mp_run *r, struct mc_wc *wc)
{
    if (wc->state != WC_READY)
        return;
    size_t limit = wc->auth_wait ? wc->auth_end : wc->wlen;
    while (wc->wpos < limit) {
        ssize_t k = send(wc->fd, wc->wbuf + wc->wpos, limit - wc->wpos, MSG_NOSIGNAL);
        if (k > 0) {
            wc->wpos += (size_t)k;
            wc->sent += (uint64_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        wc_broken(r, wc, KVI_E_IO, "writing to", strerror(errno));
        return;
    }
}

/* One reply read from wc. */
static void wc_reply(struct mp_run *r, struct mc_wc *wc, const struct mcw_reply *rp)
{
    if (rp->opaque == MP_SASL_OPAQUE && wc->auth_wait && rp->opcode == MCW_OP_SASL_AUTH) {
        wc->auth_wait = 0;
        wc->inflight--;
        /* Answered, so wholly sent: its bytes (the password) are cleared;
         * the ops queued after it keep their place in the buffer. */
        wc_forget_auth(wc);
        if (rp->status != MCW_OK) {
            char msg[1024];
            if (rp->status == MCW_UNKNOWN_COMMAND)
                snprintf(msg, sizeof msg,
                         "authentication failed: %s does not do SASL (a memcached without -S); "
                         "remove user:password from the URL; no operation was sent",
                         r->m->servers[wc->server].name);
            else
                snprintf(msg, sizeof msg,
                         "SASL authentication as '%s' refused by %s (memcached status 0x%02x); "
                         "no operation was sent",
                         r->m->sasl_user, r->m->servers[wc->server].name, (unsigned)rp->status);
            /* Nothing but the authentication left (the ops wait behind
             * it): no op is unknown. */
            server_fail(r, wc->server, KVI_E_AUTH, msg);
        }
        return;
    }
    if (rp->status == MCW_AUTH_ERROR && r->m->sasl_user == NULL) {
        /* A SASL server refuses every command of a connection that has not
         * authenticated (and then closes it): nothing of it ran. */
        char msg[1024];
        snprintf(msg, sizeof msg,
                 "authentication required: %s uses SASL; give user:password in the URL",
                 r->m->servers[wc->server].name);
        for (uint32_t i = 0; i < r->n; i++)
            if (r->ops[i].server == wc->server && r->ops[i].state == MP_SENT)
                r->ops[i].req_at = UINT64_MAX; /* refused, not unknown */
        server_fail(r, wc->server, KVI_E_AUTH, msg);
        return;
    }
    uint32_t i = rp->opaque;
    if (i >= r->n || r->ops[i].state != MP_SENT || r->ops[i].server != wc->server ||
        rp->opcode != op_opcode(&r->ops[i])) {
        wc_broken(r, wc, KVI_E_PROTOCOL, "unexpected reply from",
                  "it answers no request kvi sent on this connection");
        return;
    }
    op_reply(r, i, rp);
}

/* The largest body the reply starting at p may have: a GET's value may be
 * as big as any value; every other reply kvi asks for carries at most a
 * short error text.  Read from the header before the body is buffered. */
static size_t reply_cap(const struct mp_run *r, const uint8_t *p, size_t len)
{
    if (len < MCW_HEADER)
        return MCW_MAX_BODY;
    uint32_t opaque = (uint32_t)p[12] << 24 | (uint32_t)p[13] << 16 | (uint32_t)p[14] << 8 | p[15];
    if (p[1] == MCW_OP_GET && opaque < r->n && r->ops[opaque].state == MP_SENT &&
        r->ops[opaque].step == MP_GET)
        return MCW_MAX_BODY;
    return MP_SMALL_BODY;
}

/* Reads what wc has and handles the complete replies. */
static void wc_read(struct mp_run *r, struct mc_wc *wc)
{
    for (int rounds = 0; rounds < 64 && wc->state == WC_READY; rounds++) {
        if (wc->rcap - wc->rlen < 4096) {
            size_t cap = wc->rcap ? wc->rcap * 2 : MP_READ_CHUNK;
            uint8_t *nb = kvi_engine_realloc(r->c, wc->rbuf, cap);
            if (nb == NULL) {
                wc_broken(r, wc, KVI_E_NOMEM, "reading from", "out of memory");
                return;
            }
            wc->rbuf = nb;
            wc->rcap = cap;
        }
        size_t offered = wc->rcap - wc->rlen;
        ssize_t k = recv(wc->fd, wc->rbuf + wc->rlen, offered, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (k <= 0) {
            wc_broken(r, wc, KVI_E_IO, "reading from",
                      k == 0 ? "connection closed by the server" : strerror(errno));
            return;
        }
        wc->rlen += (size_t)k;
        size_t pos = 0, need = MCW_HEADER;
        while (wc->state == WC_READY) {
            struct mcw_reply rp;
            long used = kvi__mcw_parse(wc->rbuf + pos, wc->rlen - pos,
                                       reply_cap(r, wc->rbuf + pos, wc->rlen - pos), &rp, &need);
            if (used < 0) {
                wc_broken(r, wc, KVI_E_PROTOCOL, "reading from",
                          "not a valid memcached binary protocol reply");
                return;
            }
            if (used == 0)
                break;
            if (wc->inflight == 0) {
                wc_broken(r, wc, KVI_E_PROTOCOL, "reading from", "a reply to no request");
                return;
            }
            pos += (size_t)used;
            wc->last_ms = kvi_monotonic_ms();
            wc_reply(r, wc, &rp);
        }
        if (wc->state != WC_READY)
            return;
        memmove(wc->rbuf, wc->rbuf + pos, wc->rlen - pos);
        wc->rlen -= pos;
        /* A big reply's buffer grows (doubling, above) only as its bytes
         * arrive, never to the length its header announces. */
        if ((size_t)k < offered)
            return; /* drained: wait for more */
    }
}

/* Handles what poll() said of wc. */
static void wc_ready(struct mp_run *r, struct mc_wc *wc, short revents)
{
    if (wc->state == WC_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(wc->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
        if (err == 0 && !(revents & (POLLOUT | POLLERR | POLLHUP)))
            return;
        if (err != 0 || (revents & (POLLERR | POLLHUP))) {
            wc_broken(r, wc, KVI_E_CONNECT, "cannot connect to",
                      strerror(err != 0 ? err : ECONNREFUSED));
            return;
        }
        wc->state = WC_READY;
        wc->last_ms = kvi_monotonic_ms();
    }
    if (revents & (POLLIN | POLLHUP | POLLERR))
        wc_read(r, wc);
}

/* Queues every ready op's request and writes what can be written, until no
 * op is left ready (a write that breaks a connection ends its ops, whose
 * successors on their keys become ready). */
static void run_settle(struct mp_run *r)
{
    do {
        run_fill(r);
        for (uint32_t s = 0; s < r->m->nservers; s++)
            if (r->srv[s].wc != NULL)
                wc_flush(r, r->srv[s].wc);
    } while (r->qlen > 0);
}

/* Fills and writes, then waits up to wait_ms (0: only looks) for the
 * connections and handles what they have; repeats while replies let ops
 * move on without waiting. */
static nfds_t run_io(struct mp_run *r, int wait_ms)
{
    uint32_t ns = r->m->nservers;
    struct pollfd stack_p[8];
    uint32_t stack_s[8];
    struct pollfd *p = stack_p;
    uint32_t *who = stack_s;
    if (ns > 8) {
        p = kvi_engine_malloc(r->c, ns * sizeof *p);
        who = kvi_engine_malloc(r->c, ns * sizeof *who);
        if (p == NULL || who == NULL) {
            kvi_engine_free(r->c, p);
            kvi_engine_free(r->c, who);
            for (uint32_t s = 0; s < ns; s++)
                if (r->srv[s].wc != NULL)
                    server_fail(r, s, KVI_E_NOMEM, "out of memory");
            return 0;
        }
    }
    run_settle(r);
    nfds_t np = 0;
    for (uint32_t s = 0; s < ns; s++) {
        struct mc_wc *wc = r->srv[s].wc;
        if (wc == NULL)
            continue;
        short ev = wc_events(wc);
        if (ev != 0) {
            p[np].fd = wc->fd;
            p[np].events = ev;
            p[np].revents = 0;
            who[np++] = s;
        }
    }
    if (np > 0 && poll(p, np, wait_ms) > 0) {
        for (nfds_t j = 0; j < np; j++) {
            struct mc_wc *wc = r->srv[who[j]].wc;
            if (p[j].revents != 0 && wc->state != WC_BROKEN)
                wc_ready(r, wc, p[j].revents);
        }
        run_settle(r);
    }
    if (p != stack_p) {
        kvi_engine_free(r->c, p);
        kvi_engine_free(r->c, who);
    }
    return np;
}

/* Connections that made no progress for their timeout (connect_timeout
 * while connecting, timeout while waiting for a reply) fail. */
static void run_timeouts(struct mp_run *r, int64_t now)
{
    uint32_t conn_ms = kvi_conn_connect_timeout_ms(r->c), io_ms = kvi_conn_timeout_ms(r->c);
    for (uint32_t s = 0; s < r->m->nservers; s++) {
        struct mc_wc *wc = r->srv[s].wc;
        short ev = wc_events(wc);
        if (ev == 0)
            continue;
        uint32_t lim = wc->state == WC_CONNECTING ? conn_ms : io_ms;
        if (lim > 0 && now - wc->last_ms >= (int64_t)lim) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s did not answer within %u ms", r->m->servers[s].name,
                     (unsigned)lim);
            server_fail(r, s, KVI_E_TIMEOUT, msg);
        }
    }
}

/* The earliest time a waiting connection's timeout passes (0: none). */
static int64_t run_next_timeout(const struct mp_run *r)
{
    uint32_t conn_ms = kvi_conn_connect_timeout_ms(r->c), io_ms = kvi_conn_timeout_ms(r->c);
    int64_t next = 0;
    for (uint32_t s = 0; s < r->m->nservers; s++) {
        const struct mc_wc *wc = r->srv[s].wc;
        if (wc_events(wc) == 0)
            continue;
        uint32_t lim = wc->state == WC_CONNECTING ? conn_ms : io_ms;
        if (lim == 0)
            continue;
        int64_t t = wc->last_ms + (int64_t)lim;
        if (next == 0 || t < next)
            next = t;
    }
    return next;
}

/* ---- runs ------------------------------------------------------------------ */

static uint32_t key_hash(const char *k, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)k[i]) * 16777619u;
    return h;
}

static void run_free(struct mp_run *r)
{
    kvi_conn *c = r->c;
    if (r->srv != NULL) {
        for (uint32_t s = 0; s < r->m->nservers; s++) {
            struct mp_server *sv = &r->srv[s];
            if (sv->wc != NULL && sv->wc->fd >= 0 && r->epfd >= 0 && sv->wc->registered)
                (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, sv->wc->fd, NULL);
            wc_give(r, sv->wc);
            if (sv->entered > 0)
                kvi_breaker_leave(c, r->m->servers[s].breaker, r->m->servers[s].name, sv->probe,
                                  sv->outcome);
        }
    }
    if (r->epfd >= 0)
        close(r->epfd);
    kvi_engine_free(c, r->srv);
    kvi_engine_free(c, r->queue);
    kvi_engine_free(c, r->ops);
    kvi_engine_free(c, r);
}

/* Sets up a run of ops[0..n): keys, servers (breakers entered), the order
 * of ops on one key, the first requests queued.  NULL when out of memory
 * (every op then ended). */
static struct mp_run *run_new(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    struct mc_conn *m = kvi_conn_priv(c);
    struct mp_run *r = kvi_engine_malloc(c, sizeof *r);
    size_t hsize = 16;
    while (hsize < 2 * n)
        hsize *= 2;
    int32_t *hash = NULL;
    if (r != NULL) {
        memset(r, 0, sizeof *r);
        r->c = c;
        r->m = m;
        r->n = n;
        r->left = n;
        r->epfd = -1;
        r->deadline_ms = deadline_ms;
        r->ops = kvi_engine_malloc(c, n * sizeof *r->ops);
        r->queue = kvi_engine_malloc(c, n * sizeof *r->queue);
        r->srv = kvi_engine_malloc(c, m->nservers * sizeof *r->srv);
        if (r->srv != NULL)
            memset(r->srv, 0, m->nservers * sizeof *r->srv);
        hash = kvi_engine_malloc(c, hsize * sizeof *hash);
    }
    /* The calling process's generation holds its pooled connections. */
    struct mc_gen *gen = NULL;
    if (r != NULL && r->ops != NULL && r->queue != NULL && r->srv != NULL && hash != NULL)
        gen = kvi__mc_gen_current(c);
    if (gen == NULL) {
        for (size_t i = 0; i < n; i++)
            kvi_batch_op_done(c, ops[i], kvi_engine_error(c, KVI_E_NOMEM, "out of memory"));
        kvi_engine_free(c, hash);
        if (r != NULL) {
            r->left = 0;
            r->n = 0;
            run_free(r);
        }
        return NULL;
    }
    r->gen = gen;
    memset(hash, 0xff, hsize * sizeof *hash);
    for (size_t i = 0; i < n; i++) {
        struct mp_op *o = &r->ops[i];
        memset(o, 0, offsetof(struct mp_op, mbuf));
        o->op = ops[i];
        o->next_same = -1;
        o->state = MP_WAIT;
        struct mc_key k;
        kvi_status ks = kvi__mc_key_init(c, &k, ops[i]->key, ops[i]->key_len);
        if (ks != KVI_OK) {
            o->state = MP_DONE;
            r->left--;
            kvi_batch_op_done(c, ops[i], ks);
            continue;
        }
        o->mapped = (uint8_t)k.mapped;
        o->mkey_len = (uint8_t)k.mkey_len;
        if (k.mapped) {
            memcpy(o->mbuf, k.mkey, k.mkey_len + 1);
            o->mkey = o->mbuf;
        } else {
            o->mkey = ops[i]->key; /* a native key is the kvi key itself */
        }
        /* libmemcached's own placement, read from the configured handle
         * (memcached_generate_hash only reads it: no lease, no lock). */
        struct mc_server *sv = kvi__mc_server_of(m, m->master, k.mkey, k.mkey_len);
        if (sv == NULL) {
            o->state = MP_DONE;
            r->left--;
            kvi_batch_op_done(c, ops[i],
                              kvi_engine_error(c, KVI_E_BACKEND, "no server for this key"));
            continue;
        }
        o->server = (uint32_t)(sv - m->servers);
        struct mp_server *use = &r->srv[o->server];
        if (!use->entered) {
            kvi_status bs = kvi_breaker_enter(c, sv->breaker, sv->name, &use->probe);
            use->entered = bs == KVI_OK ? 1 : -1;
            use->outcome = bs;
        }
        if (use->entered < 0) {
            o->state = MP_DONE;
            r->left--;
            kvi_batch_op_done(c, ops[i],
                              kvi_engine_error(c, use->outcome,
                                               "%s is marked down by its circuit breaker "
                                               "(nothing sent)",
                                               sv->name));
            continue;
        }
        /* The previous op on this key, if any, comes first. */
        size_t h = key_hash(o->mkey, o->mkey_len) & (hsize - 1);
        for (;; h = (h + 1) & (hsize - 1)) {
            int32_t j = hash[h];
            if (j < 0) {
                hash[h] = (int32_t)i;
                break;
            }
            struct mp_op *p = &r->ops[j];
            if (p->mkey_len == o->mkey_len && memcmp(p->mkey, o->mkey, o->mkey_len) == 0) {
                p->next_same = (int32_t)i;
                hash[h] = (int32_t)i;
                break;
            }
        }
    }
    kvi_engine_free(c, hash);
    /* Each op's first request. */
    for (size_t i = 0; i < n; i++) {
        struct mp_op *o = &r->ops[i];
        if (o->state == MP_WAIT) {
            switch (o->op->kind) {
            case KVI_OP_STORE:
                o->step = MP_SET;
                break;
            case KVI_OP_STORE_NX:
                o->step = MP_ADD;
                break;
            default:
                o->step = MP_GET;
                break;
            }
        }
    }
    /* Ops named as another's next on the key wait for it; the others are
     * ready now (tries marks "has a predecessor" meanwhile). */
    for (size_t i = 0; i < n; i++)
        if (r->ops[i].next_same >= 0)
            r->ops[r->ops[i].next_same].tries = 1;
    for (size_t i = 0; i < n; i++) {
        struct mp_op *o = &r->ops[i];
        if (o->state == MP_WAIT && o->tries == 0)
            q_push(r, (uint32_t)i);
        o->tries = 0;
    }
    return r;
}

void kvi__mc_pipe_run(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms)
{
    if (n == 0)
        return;
    struct mp_run *r = run_new(c, ops, n, deadline_ms);
    if (r == NULL)
        return;
    while (r->left > 0) {
        int64_t now = kvi_monotonic_ms();
        if (deadline_ms != 0 && now >= deadline_ms) {
            run_stop(r, KVI_E_TIMEOUT);
            break;
        }
        /* Wake at least every 50 ms for the connections' own timeouts. */
        int wait = 50;
        if (deadline_ms != 0 && deadline_ms - now < wait)
            wait = deadline_ms > now ? (int)(deadline_ms - now) : 0;
        if (run_io(r, wait) == 0 && r->left > 0) {
            /* Nothing in flight yet ops open: cannot happen (every open
             * op is queued, sent or waits for one that is); end them
             * rather than spin. */
            for (uint32_t i = 0; i < r->n; i++)
                if (r->ops[i].state != MP_DONE)
                    op_end(r, i, kvi_engine_error(c, KVI_E_INTERNAL, "batch stalled"));
            break;
        }
        run_timeouts(r, kvi_monotonic_ms());
    }
    run_free(r);
}

/* ---- the async table ----------------------------------------------------- */

/* Fills *w: the one connection's socket when a single one waits, else the
 * run's epoll descriptor (readable when any registered socket is ready for
 * what it waits for), and the time the first waiting connection's own
 * timeout passes (resume then fails it).  0 pending, 1 done. */
static int run_wait(struct mp_run *r, kvi_wait *w)
{
    if (r->left == 0)
        return 1;
    struct mc_wc *only = NULL;
    int waiting = 0;
    for (uint32_t s = 0; s < r->m->nservers; s++)
        if (wc_events(r->srv[s].wc) != 0) {
            only = r->srv[s].wc;
            waiting++;
        }
    if (waiting == 0) {
        /* Nothing to wait for yet ops open: cannot happen (every open op
         * is queued, sent or waits for one that is); end them rather than
         * hang. */
        for (uint32_t i = 0; i < r->n; i++)
            if (r->ops[i].state != MP_DONE)
                op_end(r, i, kvi_engine_error(r->c, KVI_E_INTERNAL, "batch stalled"));
        return 1;
    }
    if (waiting == 1 && r->epfd < 0) {
        short ev = wc_events(only);
        w->fd = only->fd;
        w->events = (ev & POLLIN ? KVI_WAIT_READ : 0) | (ev & POLLOUT ? KVI_WAIT_WRITE : 0);
        w->deadline_ms = run_next_timeout(r);
        return 0;
    }
    if (r->epfd < 0) {
        r->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (r->epfd < 0) {
            for (uint32_t s = 0; s < r->m->nservers; s++)
                if (wc_events(r->srv[s].wc) != 0)
                    server_fail(r, s, KVI_E_IO, "cannot create an epoll descriptor");
            return r->left == 0 ? 1 : run_wait(r, w);
        }
    }
    for (uint32_t s = 0; s < r->m->nservers; s++) {
        struct mc_wc *wc = r->srv[s].wc;
        if (wc == NULL || wc->fd < 0)
            continue;
        short ev = wc_events(wc);
        uint32_t want = (ev & POLLIN ? EPOLLIN : 0) | (ev & POLLOUT ? EPOLLOUT : 0);
        if (want == (wc->registered ? wc->reg_events : 0))
            continue;
        struct epoll_event e;
        memset(&e, 0, sizeof e);
        e.events = want;
        e.data.u32 = s;
        int op = want == 0 ? EPOLL_CTL_DEL : wc->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(r->epfd, op, wc->fd, &e) == 0) {
            wc->registered = want != 0;
            wc->reg_events = want;
        }
    }
    w->fd = r->epfd;
    w->events = KVI_WAIT_READ;
    w->deadline_ms = run_next_timeout(r);
    return 0;
}

static int mp_start(kvi_conn *c, kvi_batch_op *const *ops, size_t n, int64_t deadline_ms,
                    void **state, kvi_wait *w)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i]->kind == KVI_OP_RAW_QUERY)
            return -1; /* never (no RAW_QUERY capability): mc_batch.c refuses it */
    *state = NULL;
    if (n == 0)
        return 1;
    struct mp_run *r = run_new(c, ops, n, deadline_ms);
    if (r == NULL)
        return 1;
    r->async = 1;
    run_io(r, 0);
    int done = run_wait(r, w);
    if (done) {
        run_free(r);
        return 1;
    }
    *state = r;
    return 0;
}

static int mp_resume(kvi_conn *c, void *state, kvi_wait *w)
{
    (void)c;
    struct mp_run *r = state;
    run_io(r, 0);
    run_timeouts(r, kvi_monotonic_ms());
    /* A timeout may have ended ops whose successors on their keys are now
     * queued: end or write them before deciding what to wait for. */
    run_settle(r);
    if (run_wait(r, w)) {
        run_free(r);
        return 1;
    }
    return 0;
}

static void mp_cancel(kvi_conn *c, void *state, kvi_status st)
{
    (void)c;
    struct mp_run *r = state;
    if (r == NULL)
        return;
    run_stop(r, st);
    run_free(r);
}

const struct kvi_engine_async kvi__mc_async = {mp_start, mp_resume, mp_cancel};
