/*
 * pool.c -- nodes, their idle connections and calls on one node (see
 * pool.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "pool.h"

/* See pool.h. */
struct kvi_redis_node *kvi__redis_node_new(kvi_conn *c, const struct kvi_redis_node_cfg *cfg,
                                           const char *host, uint16_t port, const char *path)
{
    struct kvi_redis_node *n = kvi_engine_malloc(c, sizeof *n);
    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof *n);
    n->cfg = *cfg;
    const char *src = path != NULL ? path : host;
    size_t len = strlen(src);
    struct kvi_redis_addr *a = &n->addr;
    a->name = kvi_engine_malloc(c, len + 16);
    char *copy = kvi_engine_malloc(c, len + 1);
    if (a->name == NULL || copy == NULL) {
        kvi_engine_free(c, a->name);
        kvi_engine_free(c, copy);
        kvi_engine_free(c, n);
        return NULL;
    }
    memcpy(copy, src, len + 1);
    if (path != NULL) {
        a->path = copy;
        memcpy(a->name, path, len + 1);
    } else {
        a->host = copy;
        /* An IPv6 address gets brackets so that the port stays readable. */
        if (strchr(host, ':') != NULL)
            snprintf(a->name, len + 16, "[%s]:%u", host, (unsigned)port);
        else
            snprintf(a->name, len + 16, "%s:%u", host, (unsigned)port);
    }
    a->port = port;
    n->breaker = kvi_breaker_new(c, &n->cfg.breaker);
    if (n->breaker == NULL) {
        kvi_engine_free(c, a->name);
        kvi_engine_free(c, copy);
        kvi_engine_free(c, n);
        return NULL;
    }
    pthread_mutex_init(&n->mu, NULL);
    kvi__redis_tls_cache_init(&n->tls_cache);
    atomic_init(&n->script_loaded, 0);
    return n;
}

/* Connections with near-cache tracking on that this process closed: the
 * server sends no invalidation for what such a connection read (Redis
 * finds no client of that id), so every near cache flushes when it changes
 * (kvi__redis_tracked_closed, nearcache.c). */
static _Atomic uint64_t tracked_closed;

/* See pool.h. */
uint64_t kvi__redis_tracked_closed(void)
{
    return atomic_load_explicit(&tracked_closed, memory_order_acquire);
}

static void link_close(kvi_conn *c, struct kvi_redis_link *l)
{
    if (l == NULL)
        return;
    kvi__redis_conn_close(&l->conn);
    kvi_engine_free(c, l);
}

/* Closes l while the process runs (counted when its tracking was on). */
static void link_free(kvi_conn *c, struct kvi_redis_link *l)
{
    if (l != NULL && l->nc_epoch != 0)
        atomic_fetch_add_explicit(&tracked_closed, 1, memory_order_release);
    link_close(c, l);
}

/* See pool.h. */
void kvi__redis_node_free(kvi_conn *c, struct kvi_redis_node *n, int destroy_mutex)
{
    struct kvi_redis_link *l = n->idle;
    while (l != NULL) {
        struct kvi_redis_link *next = l->next;
        link_close(c, l); /* the near caches are freed with the state */
        l = next;
    }
    if (destroy_mutex)
        pthread_mutex_destroy(&n->mu);
    kvi__redis_tls_cache_free(&n->tls_cache, destroy_mutex);
    /* A parent's breaker after fork: its mutex is not ours to destroy. */
    if (destroy_mutex)
        kvi_breaker_free(c, n->breaker);
    else
        kvi_engine_free(c, n->breaker);
    kvi_engine_free(c, n->addr.host);
    kvi_engine_free(c, n->addr.path);
    kvi_engine_free(c, n->addr.name);
    kvi_engine_free(c, n);
}

/* See pool.h. */
const char *kvi__redis_node_name(const struct kvi_redis_node *node)
{
    return node->addr.name;
}

/* A pooled connection is dead when the server closed it (or sent something
 * nobody asked for): readable while idle. */
static int link_alive(struct kvi_redis_link *l)
{
    return kvi__redis_conn_idle_ok(&l->conn);
}

/* See pool.h. */
void kvi__redis_node_reap_tracked(kvi_conn *c, struct kvi_redis_node *n)
{
    enum { CHUNK = 64 };
    struct kvi_redis_link *dead = NULL;
    pthread_mutex_lock(&n->mu);
    /* Under the mutex: the links polled cannot be borrowed meanwhile. */
    struct kvi_redis_link **at = &n->idle;
    while (*at != NULL) {
        struct pollfd p[CHUNK];
        struct kvi_redis_link **where[CHUNK];
        nfds_t np = 0;
        for (; *at != NULL && np < CHUNK; at = &(*at)->next)
            if ((*at)->nc_epoch != 0) {
                p[np] = (struct pollfd){.fd = (*at)->conn.sock.fd, .events = POLLIN};
                where[np++] = at;
            }
        if (np == 0 || poll(p, np, 0) <= 0)
            continue;
        /* Unlinked from the last one back, so that the earlier places stay
         * right. */
        for (nfds_t i = np; i-- > 0;) {
            struct kvi_redis_link *l = *where[i];
            if (p[i].revents == 0 || link_alive(l))
                continue;
            if (at == &l->next)
                at = where[i];
            *where[i] = l->next;
            n->nidle--;
            l->next = dead;
            dead = l;
        }
    }
    pthread_mutex_unlock(&n->mu);
    while (dead != NULL) {
        struct kvi_redis_link *next = dead->next;
        link_free(c, dead);
        dead = next;
    }
}

/* An idle connection of n, or NULL.  check 0 skips link_alive()'s poll
 * (a system call): for a caller that sends again, on a checked
 * connection, what a dead one failed (kvi__redis_pipeline_partial). */
static struct kvi_redis_link *pool_pop(kvi_conn *c, struct kvi_redis_node *n, int check)
{
    for (;;) {
        pthread_mutex_lock(&n->mu);
        struct kvi_redis_link *l = n->idle;
        if (l != NULL) {
            n->idle = l->next;
            n->nidle--;
        }
        pthread_mutex_unlock(&n->mu);
        if (l == NULL || (check ? link_alive(l) : l->conn.state == KVI_REDIS_CS_READY))
            return l;
        link_free(c, l);
    }
}

static void pool_push(kvi_conn *c, struct kvi_redis_node *n, struct kvi_redis_link *l)
{
    pthread_mutex_lock(&n->mu);
    if (n->nidle < n->cfg.max_idle) {
        l->next = n->idle;
        n->idle = l;
        n->nidle++;
        l = NULL;
    }
    pthread_mutex_unlock(&n->mu);
    link_free(c, l);
}

/* A connection to node n: an idle one (*reused = 1) or a new one. */
static kvi_status borrow(kvi_conn *c, struct kvi_redis_node *n, struct kvi_redis_link **out,
                         int *reused, int check)
{
    *out = pool_pop(c, n, check);
    *reused = *out != NULL;
    if (*out != NULL)
        return KVI_OK;
    struct kvi_redis_link *l = kvi_engine_malloc(c, sizeof *l);
    if (l == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    int role = n->sentinel ? KVI_REDIS_ROLE_SENTINEL : KVI_REDIS_ROLE_DATA;
    int loaded = 0;
    kvi_status s = kvi__redis_connect(c, &n->cfg, &n->addr, &n->tls_cache, role,
                                      !n->sentinel && !atomic_load(&n->script_loaded), &loaded,
                                      &l->conn);
    if (s != KVI_OK) {
        kvi_engine_free(c, l);
        return s;
    }
    if (loaded)
        atomic_store(&n->script_loaded, 1);
    l->next = NULL;
    l->nc_epoch = 0;
    *out = l;
    return KVI_OK;
}

/* See pool.h. */
kvi_status kvi__redis_link_borrow(kvi_conn *c, struct kvi_redis_node *n,
                                  struct kvi_redis_link **out, int *reused)
{
    return borrow(c, n, out, reused, 1);
}

/* See pool.h. */
int kvi__redis_retryable(kvi_status s)
{
    return s == KVI_E_CONNECT || s == KVI_E_IO;
}

/* See pool.h. */
kvi_status kvi__redis_node_call(kvi_conn *c, struct kvi_redis_node *n,
                                const struct kvi_redis_cmd *cmd, int asking, int *reused,
                                int *phase, redisReply **out)
{
    struct kvi_redis_link *l;
    int probe, answered = 0;

    *phase = KVI_REDIS_REFUSED;
    *reused = 0;
    kvi_status s = kvi_breaker_enter(c, n->breaker, n->addr.name, &probe);
    if (s != KVI_OK)
        return s;
    *phase = KVI_REDIS_NO_CONN;
    s = borrow(c, n, &l, reused, 1);
    if (s != KVI_OK) {
        kvi_breaker_leave(c, n->breaker, n->addr.name, probe, s);
        return s;
    }
    *phase = KVI_REDIS_SENT;
    s = kvi__redis_roundtrip(c, &n->cfg, &l->conn, cmd, asking, &answered, out);
    kvi_breaker_leave(c, n->breaker, n->addr.name, probe, answered ? KVI_OK : s);
    if (s == KVI_OK)
        pool_push(c, n, l);
    else
        link_free(c, l);
    return s;
}

/* See pool.h. */
kvi_status kvi__redis_exec_on(kvi_conn *c, struct kvi_redis_node *n,
                              const struct kvi_redis_cmd *cmd, redisReply **out)
{
    for (int attempt = 0;; attempt++) {
        int reused, phase;
        kvi_status s = kvi__redis_node_call(c, n, cmd, 0, &reused, &phase, out);
        if (s == KVI_OK || phase != KVI_REDIS_SENT)
            return s;
        if (!(reused && cmd->resend_ok && kvi__redis_retryable(s) && attempt == 0))
            return s;
    }
}

/* See pool.h. */
kvi_status kvi__redis_pipeline_on(kvi_conn *c, struct kvi_redis_node *n, size_t count,
                                  const struct kvi_redis_cmd *cmds, redisReply **replies)
{
    struct kvi_redis_link *l;
    int reused, probe;
    size_t got = 0;

    kvi_status s = kvi_breaker_enter(c, n->breaker, n->addr.name, &probe);
    if (s != KVI_OK)
        return s;
    s = borrow(c, n, &l, &reused, 1);
    if (s != KVI_OK) {
        kvi_breaker_leave(c, n->breaker, n->addr.name, probe, s);
        return s;
    }
    for (size_t i = 0; i < count && s == KVI_OK; i++)
        s = kvi__redis_append(c, &l->conn, &cmds[i]);
    for (; got < count && s == KVI_OK; got++) {
        redisReply *v = NULL;
        /* Each reply gets the full timeout: a big batch is not a slow one. */
        s = kvi__redis_get_reply(c, &l->conn, kvi__redis_deadline_after(n->cfg.timeout_ms), &v);
        replies[got] = v;
    }
    kvi_breaker_leave(c, n->breaker, n->addr.name, probe, got > 1 || s == KVI_OK ? KVI_OK : s);
    if (s != KVI_OK) {
        for (size_t i = 0; i < got; i++) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        link_free(c, l);
        return s;
    }
    pool_push(c, n, l);
    return KVI_OK;
}

/* Replies a pipeline reads before it appends the next requests: bounds
 * the memory of a big batch; the server works on one chunk while the next
 * is written. */
#define PIPE_CHUNK 1024

/* Writes out what conn holds and reads one reply by deadline (monotonic,
 * 0 = none); soon says the batch's deadline comes before the
 * connection's timeout (then no read may block in recv()). */
static kvi_status pipe_reply(kvi_conn *c, struct kvi_redis_node *n, struct kvi_redis_conn *conn,
                             int64_t deadline, int soon, redisReply **out)
{
    int w;
    for (;;) {
        int f = kvi__redis_conn_flush(conn);
        if (f > 0)
            break;
        if (f < 0)
            return kvi_engine_error(c, conn->st, "%s", conn->err);
        if ((w = kvi__redis_conn_wait(conn, deadline)) <= 0)
            goto wait_failed;
    }
    int block = conn->cfg.tls == NULL && !soon;
    for (;;) {
        int r = kvi__redis_conn_read(conn, block, out);
        block = 0;
        if (r > 0)
            return KVI_OK;
        if (r < 0)
            return kvi_engine_error(c, conn->st, "%s", conn->err);
        if ((w = kvi__redis_conn_wait(conn, deadline)) <= 0)
            goto wait_failed;
    }
wait_failed:
    if (w < 0)
        return kvi_engine_error(c, KVI_E_IO, "request to %s: poll failed", n->addr.name);
    if (soon)
        return kvi_engine_error(c, KVI_E_TIMEOUT, "request to %s: no reply by the batch's deadline",
                                n->addr.name);
    return kvi_engine_error(c, KVI_E_TIMEOUT, "request to %s: timed out after %u ms", n->addr.name,
                            (unsigned)n->cfg.timeout_ms);
}

/* See pool.h. */
kvi_status kvi__redis_pipeline_partial(kvi_conn *c, struct kvi_redis_node *n, size_t count,
                                       const struct kvi_redis_cmd *cmds, redisReply **replies,
                                       int64_t deadline_ms, redisReplyObjectFunctions *fns,
                                       size_t *fns_seq, size_t *got, size_t *appended)
{
    redisReplyObjectFunctions *saved_fns = NULL;
    struct kvi_redis_link *l;
    int reused, probe;
    uint32_t timeout_ms = n->cfg.timeout_ms;

    /* A connection the server closed while it sat idle fails at its first
     * read, before any reply: when every command may be sent twice, that
     * is cheaper to notice then (and send again, once, on a checked or
     * new connection) than with a poll before every borrow.  A pipeline
     * holding a command that must never be sent twice checks first. */
    int resendable = 1;
    for (size_t i = 0; i < count && resendable; i++)
        resendable = cmds[i].resend_ok;
    int check = !resendable;
    kvi_status s = kvi_breaker_enter(c, n->breaker, n->addr.name, &probe);
    if (s != KVI_OK)
        return s;
again:
    *got = 0;
    *appended = 0;
    if (fns_seq != NULL)
        *fns_seq = 0;
    s = borrow(c, n, &l, &reused, check);
    if (s != KVI_OK) {
        kvi_breaker_leave(c, n->breaker, n->addr.name, probe, s);
        return s;
    }
    if (fns != NULL) {
        saved_fns = l->conn.reader->fn;
        l->conn.reader->fn = fns;
    }
    while (*got < count && s == KVI_OK) {
        /* Keep up to two chunks of requests ahead of the replies. */
        if (*appended - *got <= PIPE_CHUNK) {
            size_t end = *appended + PIPE_CHUNK < count ? *appended + PIPE_CHUNK : count;
            while (*appended < end && s == KVI_OK) {
                s = kvi__redis_append(c, &l->conn, &cmds[*appended]);
                if (s == KVI_OK)
                    (*appended)++;
            }
            if (s != KVI_OK)
                break;
        }
        /* Each reply gets the connection's full timeout (a big batch is not
         * a slow one), never beyond the batch's deadline. */
        int64_t d = kvi__redis_deadline_after(timeout_ms);
        int soon = deadline_ms != 0 && (d == 0 || deadline_ms < d);
        redisReply *v = NULL;
        s = pipe_reply(c, n, &l->conn, soon ? deadline_ms : d, soon, &v);
        if (s == KVI_OK)
            replies[(*got)++] = v;
    }
    if (fns != NULL && l->conn.reader != NULL)
        l->conn.reader->fn = saved_fns;
    if (s != KVI_OK && *got == 0 && reused && resendable && !check && kvi__redis_retryable(s)) {
        link_free(c, l);
        check = 1;
        goto again;
    }
    kvi_breaker_leave(c, n->breaker, n->addr.name, probe, *got > 0 || s == KVI_OK ? KVI_OK : s);
    if (s != KVI_OK)
        link_free(c, l);
    else
        pool_push(c, n, l);
    return s;
}

/* ---- several nodes at once ---- */

/* The calling thread's detail message without its "id: " prefix. */
static void copy_err(kvi_conn *c, char *buf, size_t len)
{
    const char *m = kvi_errmsg(kvi_conn_context(c));
    size_t idl = strlen(kvi_conn_id(c));
    if (strncmp(m, kvi_conn_id(c), idl) == 0 && m[idl] == ':' && m[idl + 1] == ' ')
        m += idl + 2;
    snprintf(buf, len, "%s", m);
}

static int pipe_open(kvi_conn *c, struct kvi_redis_pipe *p, redisReplyObjectFunctions *fns);

/* p ends with s (detail msg when not KVI_OK) -- or, failed before its
 * first reply on a pooled connection taken unchecked with only resendable
 * commands, starts again on a checked one.  1 when p is active again. */
static int pipe_end(kvi_conn *c, struct kvi_redis_pipe *p, redisReplyObjectFunctions *fns,
                    kvi_status s, const char *msg)
{
    struct kvi_redis_node *n = p->node;
    if (fns != NULL && p->l->conn.reader != NULL)
        p->l->conn.reader->fn = p->saved_fns;
    p->active = 0;
    if (s != KVI_OK && p->got == 0 && p->reused && p->resendable && !p->check &&
        kvi__redis_retryable(s)) {
        link_free(c, p->l);
        p->l = NULL;
        p->check = 1;
        return pipe_open(c, p, fns) == 0;
    }
    kvi_breaker_leave(c, n->breaker, n->addr.name, p->probe, p->got > 0 || s == KVI_OK ? KVI_OK : s);
    if (s != KVI_OK) {
        snprintf(p->err, sizeof p->err, "%s", msg);
        kvi_engine_error(c, s, "%s", msg);
        link_free(c, p->l);
    } else {
        pool_push(c, n, p->l);
    }
    p->l = NULL;
    p->st = s;
    return 0;
}

/* Appends p's next chunk of requests: 0, or -1 (p ended). */
static int pipe_chunk(kvi_conn *c, struct kvi_redis_pipe *p, redisReplyObjectFunctions *fns)
{
    size_t end = p->appended + PIPE_CHUNK < p->count ? p->appended + PIPE_CHUNK : p->count;
    while (p->appended < end) {
        struct kvi_redis_conn *conn = &p->l->conn;
        if (kvi__redis_conn_append(conn, p->cmds[p->appended].argc, p->cmds[p->appended].argv,
                                   p->cmds[p->appended].lens) != 0) {
            pipe_end(c, p, fns, conn->st != KVI_OK ? conn->st : KVI_E_NOMEM, conn->err);
            return -1;
        }
        p->appended++;
    }
    return 0;
}

/* Takes a connection for p (the breaker was entered) and appends its
 * first chunk: 0, or -1 when p ended. */
static int pipe_open(kvi_conn *c, struct kvi_redis_pipe *p, redisReplyObjectFunctions *fns)
{
    struct kvi_redis_node *n = p->node;
    p->got = 0;
    p->appended = 0;
    if (p->fns_seq != NULL)
        *p->fns_seq = 0;
    kvi_status s = borrow(c, n, &p->l, &p->reused, p->check);
    if (s != KVI_OK) {
        copy_err(c, p->err, sizeof p->err);
        kvi_breaker_leave(c, n->breaker, n->addr.name, p->probe, s);
        p->st = s;
        p->active = 0;
        return -1;
    }
    if (fns != NULL) {
        p->saved_fns = p->l->conn.reader->fn;
        p->l->conn.reader->fn = fns;
    }
    p->active = 1;
    p->reply_deadline = kvi__redis_deadline_after(n->cfg.timeout_ms);
    return pipe_chunk(c, p, fns);
}

/* Advances p as far as it goes without waiting; with write_only, only
 * writes (right after the requests were appended no reply can be there:
 * a read would be a system call for nothing); with block, its first read
 * may wait in recv (SO_RCVTIMEO: the connection's timeout). */
static void pipe_progress(kvi_conn *c, struct kvi_redis_pipe *p, redisReplyObjectFunctions *fns,
                          int write_only, int block)
{
    while (p->active) {
        struct kvi_redis_conn *conn = &p->l->conn;
        /* Keep up to two chunks of requests ahead of the replies. */
        if (p->appended < p->count && p->appended - p->got <= PIPE_CHUNK &&
            pipe_chunk(c, p, fns) != 0)
            return;
        int f = kvi__redis_conn_flush(conn);
        if (f < 0) {
            pipe_end(c, p, fns, conn->st, conn->err);
            continue; /* active again after a resend */
        }
        if (f == 0)
            return;
        if (write_only) {
            conn->sock.want = POLLIN;
            return;
        }
        while (p->got < p->count) {
            redisReply *v = NULL;
            if (p->enter != NULL)
                p->enter(p->ud, 1);
            int r = kvi__redis_conn_read(conn, block, &v);
            block = 0;
            if (p->enter != NULL)
                p->enter(p->ud, 0);
            if (r < 0) {
                pipe_end(c, p, fns, conn->st, conn->err);
                break;
            }
            if (r == 0)
                return;
            p->replies[p->got++] = v;
            p->reply_deadline = kvi__redis_deadline_after(p->node->cfg.timeout_ms);
            if (p->appended < p->count && p->appended - p->got <= PIPE_CHUNK)
                break; /* the next chunk */
        }
        if (p->active && p->got == p->count) {
            pipe_end(c, p, fns, KVI_OK, "");
            return;
        }
    }
}

/* See pool.h. */
void kvi__redis_pipeline_multi(kvi_conn *c, struct kvi_redis_pipe *const *p, size_t k,
                               int64_t deadline_ms, redisReplyObjectFunctions *fns)
{
    enum { SMALL = 8 };
    struct pollfd small_fds[SMALL];
    size_t small_at[SMALL];
    struct pollfd *fds = small_fds;
    size_t *at = small_at;
    if (k > SMALL) {
        fds = kvi_engine_malloc(c, k * sizeof *fds);
        at = kvi_engine_malloc(c, k * sizeof *at);
    }
    for (size_t i = 0; i < k; i++) {
        struct kvi_redis_pipe *q = p[i];
        q->st = KVI_OK;
        q->err[0] = '\0';
        q->got = q->appended = 0;
        q->active = 0;
        q->l = NULL;
        q->resendable = 1;
        for (size_t j = 0; j < q->count && q->resendable; j++)
            q->resendable = q->cmds[j].resend_ok;
        q->check = !q->resendable;
        if (fds == NULL || at == NULL) {
            q->st = kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
            snprintf(q->err, sizeof q->err, "out of memory");
            continue;
        }
        kvi_status s = kvi_breaker_enter(c, q->node->breaker, q->node->addr.name, &q->probe);
        if (s != KVI_OK) {
            q->st = s;
            copy_err(c, q->err, sizeof q->err);
            continue;
        }
        /* The first chunk of every pipe is written before any reply is
         * waited for. */
        if (pipe_open(c, q, fns) == 0)
            pipe_progress(c, q, fns, 1, 0);
    }
    /* Everything written (the usual case): the first waiting pipe's read
     * waits in recv -- one system call where poll + recv are two --, then
     * the others take what has come meanwhile; as the single-node
     * pipeline, not over TLS nor when the batch's deadline comes before
     * the connection's timeout (then every wait is a poll). */
    struct kvi_redis_pipe *lead = NULL;
    int all_read = 1;
    for (size_t i = 0; i < k; i++) {
        if (!p[i]->active)
            continue;
        if (lead == NULL)
            lead = p[i];
        all_read &= p[i]->l->conn.sock.want == POLLIN;
    }
    if (lead != NULL && all_read && lead->l->conn.cfg.tls == NULL &&
        !(deadline_ms != 0 &&
          (lead->reply_deadline == 0 || deadline_ms < lead->reply_deadline))) {
        pipe_progress(c, lead, fns, 0, 1);
        for (size_t i = 0; i < k; i++)
            if (p[i]->active && p[i] != lead)
                pipe_progress(c, p[i], fns, 0, 0);
    }
    for (;;) {
        size_t na = 0;
        int64_t now = kvi_monotonic_ms(), first = 0;
        for (size_t i = 0; i < k; i++) {
            struct kvi_redis_pipe *q = p[i];
            if (!q->active)
                continue;
            int64_t d = q->reply_deadline;
            int soon = deadline_ms != 0 && (d == 0 || deadline_ms < d);
            int64_t until = soon ? deadline_ms : d;
            if (until != 0 && now >= until) {
                char msg[400];
                if (soon)
                    snprintf(msg, sizeof msg, "request to %s: no reply by the batch's deadline",
                             q->node->addr.name);
                else
                    snprintf(msg, sizeof msg, "request to %s: timed out after %u ms",
                             q->node->addr.name, (unsigned)q->node->cfg.timeout_ms);
                /* Not resent: the connection did not fail, it was slow. */
                q->resendable = 0;
                pipe_end(c, q, fns, KVI_E_TIMEOUT, msg);
                continue;
            }
            if (until != 0 && (first == 0 || until < first))
                first = until;
            fds[na].fd = q->l->conn.sock.fd;
            fds[na].events = q->l->conn.sock.want == POLLOUT ? POLLOUT : POLLIN;
            fds[na].revents = 0;
            at[na++] = i;
        }
        if (na == 0)
            break;
        int timeout = first == 0 ? -1 : (int)(first - now);
        int r = poll(fds, (nfds_t)na, timeout);
        if (r < 0 && errno != EINTR) {
            for (size_t j = 0; j < na; j++) {
                struct kvi_redis_pipe *q = p[at[j]];
                char msg[400];
                snprintf(msg, sizeof msg, "request to %s: poll failed", q->node->addr.name);
                q->resendable = 0;
                pipe_end(c, q, fns, KVI_E_IO, msg);
            }
            break;
        }
        for (size_t j = 0; r > 0 && j < na; j++)
            if (fds[j].revents != 0)
                pipe_progress(c, p[at[j]], fns, 0, 0);
    }
    if (fds != small_fds)
        kvi_engine_free(c, fds);
    if (at != small_at)
        kvi_engine_free(c, at);
}

/* See pool.h. */
int kvi__redis_link_take(kvi_conn *c, struct kvi_redis_node *n, struct kvi_redis_link **out,
                         int check)
{
    *out = pool_pop(c, n, check);
    if (*out != NULL)
        return 1;
    struct kvi_redis_link *l = kvi_engine_malloc(c, sizeof *l);
    if (l == NULL) {
        kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
        return -1;
    }
    memset(l, 0, sizeof *l);
    struct kvi_redis_conn_cfg cc;
    kvi__redis_conn_cfg(&n->cfg, &n->addr, &n->tls_cache,
                        n->sentinel ? KVI_REDIS_ROLE_SENTINEL : KVI_REDIS_ROLE_DATA, &cc);
    if (kvi__redis_conn_start(&l->conn, &cc) < 0) {
        kvi_engine_error(c, l->conn.st, "%s", l->conn.err);
        kvi__redis_conn_close(&l->conn);
        kvi_engine_free(c, l);
        return -1;
    }
    *out = l;
    return 0;
}

/* See pool.h. */
void kvi__redis_link_give(kvi_conn *c, struct kvi_redis_node *n, struct kvi_redis_link *l)
{
    pool_push(c, n, l);
}

/* See pool.h. */
void kvi__redis_link_drop(kvi_conn *c, struct kvi_redis_link *l)
{
    link_free(c, l);
}
