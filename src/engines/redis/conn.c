/*
 * conn.c -- one connection as a non-blocking state machine, and the
 * blocking helpers over it (see conn.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "conn.h"
#include "deep.h"

/* What each set-up request was. */
enum { SETUP_AUTH = 1, SETUP_SELECT, SETUP_PING };

/* Most elements one array reply may announce (more is refused before
 * hiredis allocates room for them). */
#define MAX_ELEMENTS (1u << 24)
/* Bytes read from the socket at a time. */
#define READ_CHUNK 16384

/* Marks conn failed with st and "connect to NAME: ..." (before ready) or
 * "request to NAME: ...".  Returns -1. */
static int conn_fail(struct kvi_redis_conn *conn, kvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int conn_fail(struct kvi_redis_conn *conn, kvi_status st, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(conn->err, sizeof conn->err, "%s %s: %s",
             conn->state < KVI_REDIS_CS_READY ? "connect to" : "request to", conn->cfg.name, why);
    conn->st = st;
    conn->state = KVI_REDIS_CS_FAILED;
    return -1;
}

/* The socket's failure as the connection's.  A TLS server that drops the
 * connection right after the handshake, before answering anything, has
 * refused our certificate (TLS 1.3 says so after the handshake; its alert
 * may be lost to the reset our first request causes). */
static int sock_failed(struct kvi_redis_conn *conn)
{
    if (conn->cfg.tls != NULL && conn->state == KVI_REDIS_CS_SETUP && !conn->answered &&
        conn->sock.st == KVI_E_CONNECT)
        return conn_fail(conn, KVI_E_AUTH,
                         "%s right after the TLS handshake (the server refused our certificate "
                         "or wants one: tls_cert, tls_key)",
                         conn->sock.err);
    return conn_fail(conn, conn->sock.st, "%s", conn->sock.err);
}

/* ---------------------------------------------------------------------- */
/* The length guard: a flat scan of the reply stream that finds every bulk
 * length and array count before hiredis buffers what they announce.
 * RESP2 is a sequence of lines, some followed by a body of announced
 * length; arrays are just lines, so no nesting needs tracking. */

enum { G_TYPE = 0, G_LINE, G_BULKLEN, G_COUNT, G_BODY };

/* 0, or -1 (with the message set) for a length beyond the limits. */
static int guard_scan(struct kvi_redis_conn *conn, const char *p, size_t len)
{
    struct kvi_redis_guard *g = &conn->guard;
    size_t i = 0;
    while (i < len) {
        char ch = p[i];
        switch (g->state) {
        case G_TYPE:
            g->n = 0;
            g->neg = 0;
            g->state = ch == '$' ? G_BULKLEN : ch == '*' ? G_COUNT : G_LINE;
            i++;
            break;
        case G_LINE: {
            const char *nl = memchr(p + i, '\n', len - i);
            if (nl == NULL)
                return 0;
            i = (size_t)(nl - p) + 1;
            g->state = G_TYPE;
            break;
        }
        case G_BULKLEN:
        case G_COUNT:
            i++;
            if (ch == '-') {
                g->neg = 1;
            } else if (ch >= '0' && ch <= '9') {
                g->n = g->n * 10 + (uint64_t)(ch - '0');
                if (!g->neg && g->state == G_BULKLEN && g->n > KVI_MAX_VALUE_LEN)
                    return conn_fail(conn, KVI_E_PROTOCOL,
                                     "reply announces a string longer than %u bytes",
                                     (unsigned)KVI_MAX_VALUE_LEN);
                if (!g->neg && g->state == G_COUNT && g->n > MAX_ELEMENTS)
                    return conn_fail(conn, KVI_E_PROTOCOL,
                                     "reply announces an array of more than %u elements",
                                     MAX_ELEMENTS);
            } else if (ch == '\n') {
                if (g->state == G_BULKLEN && !g->neg) {
                    g->n += 2; /* the body and its CRLF */
                    g->state = G_BODY;
                } else {
                    g->state = G_TYPE;
                }
            } else if (ch != '\r') {
                g->state = G_LINE; /* hiredis will call it malformed */
            }
            break;
        case G_BODY: {
            size_t take = len - i < g->n ? len - i : (size_t)g->n;
            i += take;
            g->n -= take;
            if (g->n == 0)
                g->state = G_TYPE;
            break;
        }
        default:
            g->state = G_TYPE;
            break;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Requests                                                                */

static int obuf_reserve(struct kvi_redis_conn *conn, size_t more)
{
    if (conn->opos > 0 && conn->opos == conn->olen)
        conn->opos = conn->olen = 0;
    if (conn->olen + more <= conn->ocap)
        return 0;
    size_t cap = conn->ocap ? conn->ocap : 1024;
    while (cap < conn->olen + more)
        cap *= 2;
    char *nb = realloc(conn->obuf, cap);
    if (nb == NULL)
        return -1;
    conn->obuf = nb;
    conn->ocap = cap;
    return 0;
}

/* See conn.h. */
/* Writes "<mark><n>\r\n" at p (a RESP header) and returns the end: a
 * hand-made decimal, since sprintf cost a tenth of a pipelined GET. */
static char *put_header(char *p, char mark, size_t n)
{
    *p = mark;
    if (n < 100) { /* nearly every header: argument counts, keys, small values */
        if (n >= 10)
            *++p = (char)('0' + n / 10);
        p[1] = (char)('0' + n % 10);
        p[2] = '\r';
        p[3] = '\n';
        return p + 4;
    }
    char digits[24];
    size_t len = 0;
    do {
        digits[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    p++;
    while (len > 0)
        *p++ = digits[--len];
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

int kvi__redis_conn_append(struct kvi_redis_conn *conn, int argc, const char *const *argv,
                           const size_t *lens)
{
    size_t need = 16;
    for (int i = 0; i < argc; i++)
        need += lens[i] + 24;
    if (obuf_reserve(conn, need) != 0)
        return conn_fail(conn, KVI_E_NOMEM, "out of memory");
    char *p = put_header(conn->obuf + conn->olen, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        p = put_header(p, '$', lens[i]);
        if (lens[i] > 0)
            memcpy(p, argv[i], lens[i]);
        p += lens[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    conn->olen = (size_t)(p - conn->obuf);
    return 0;
}

/* See conn.h. */
int kvi__redis_conn_flush(struct kvi_redis_conn *conn)
{
    if (conn->state == KVI_REDIS_CS_FAILED)
        return -1;
    while (conn->opos < conn->olen) {
        ssize_t n = conn->tp->write(&conn->sock, conn->obuf + conn->opos, conn->olen - conn->opos);
        if (n == KVI_REDIS_NET_AGAIN)
            return 0;
        if (n < 0)
            return sock_failed(conn);
        conn->opos += (size_t)n;
    }
    conn->opos = conn->olen = 0;
    return 1;
}

/* See conn.h. */
int kvi__redis_conn_read(struct kvi_redis_conn *conn, int block, redisReply **out)
{
    char buf[READ_CHUNK];
    if (conn->state == KVI_REDIS_CS_FAILED)
        return -1;
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(conn->reader, &r) != REDIS_OK) {
            const char *e = redisReaderGetError(conn->reader);
            if (strstr(e, "nested multi bulk") != NULL)
                /* hiredis 0.14's reader has a fixed stack of 9 tasks
                 * (replies nest at most 7 levels). */
                return conn_fail(conn, KVI_E_PROTOCOL,
                                 "reply nests deeper than the 7 levels hiredis %d.%d can read; "
                                 "ask for less (e.g. COMMAND DOCS with command names)",
                                 HIREDIS_MAJOR, HIREDIS_MINOR);
            return conn_fail(conn, KVI_E_PROTOCOL, "%s", e);
        }
        if (r != NULL) {
            conn->answered = 1;
            *out = r;
            return 1;
        }
        if (block < 0 && conn->sock.ssl != NULL && SSL_pending(conn->sock.ssl) == 0) {
            /* The reply cannot be there yet: wait before the first read
             * rather than fail one (a syscall per request). */
            conn->sock.want = POLLIN;
            return 0;
        }
        ssize_t n = conn->tp->read(&conn->sock, buf, sizeof buf, block > 0);
        block = 0;
        if (n == KVI_REDIS_NET_AGAIN)
            return 0;
        if (n == 0 && conn->cfg.tls != NULL && conn->state == KVI_REDIS_CS_SETUP) {
            conn->sock.st = KVI_E_CONNECT;
            snprintf(conn->sock.err, sizeof conn->sock.err, "TLS: server closed the connection");
            return sock_failed(conn);
        }
        if (n == 0)
            return conn_fail(conn, KVI_E_CONNECT, "server closed the connection%s",
                             conn->answered || conn->cfg.tls != NULL
                                 ? ""
                                 : " (does it expect TLS on this port? then add tls=yes)");
        if (n < 0 && !conn->answered && conn->cfg.tls == NULL && conn->sock.st == KVI_E_CONNECT)
            return conn_fail(conn, KVI_E_CONNECT,
                             "%s (does it expect TLS on this port? then add "
                             "tls=yes)",
                             conn->sock.err);
        if (n < 0)
            return sock_failed(conn);
        if (guard_scan(conn, buf, (size_t)n) != 0)
            return -1;
        if (redisReaderFeed(conn->reader, buf, (size_t)n) != REDIS_OK)
            return conn_fail(conn, KVI_E_NOMEM, "out of memory");
    }
}

/* ---------------------------------------------------------------------- */
/* Connecting                                                              */

/* Queues the set-up requests; 1 when there are none. */
static int queue_setup(struct kvi_redis_conn *conn)
{
    const struct kvi_redis_conn_cfg *cfg = &conn->cfg;
    if (cfg->password != NULL) {
        const char *argv[3] = {"AUTH", cfg->user, cfg->password};
        size_t lens[3] = {4, cfg->user ? strlen(cfg->user) : 0, strlen(cfg->password)};
        if (cfg->user == NULL) {
            argv[1] = cfg->password;
            lens[1] = lens[2];
        }
        if (kvi__redis_conn_append(conn, cfg->user ? 3 : 2, argv, lens) != 0)
            return -1;
        conn->setup[conn->nsetup++] = SETUP_AUTH;
    }
    if (cfg->db > 0) {
        char dbtext[24];
        snprintf(dbtext, sizeof dbtext, "%ld", cfg->db);
        const char *argv[2] = {"SELECT", dbtext};
        size_t lens[2] = {6, strlen(dbtext)};
        if (kvi__redis_conn_append(conn, 2, argv, lens) != 0)
            return -1;
        conn->setup[conn->nsetup++] = SETUP_SELECT;
    }
    if (cfg->tls != NULL && conn->nsetup == 0) {
        /* One round trip so that a server refusing our certificate (TLS
         * 1.3 says so after the handshake) fails the connect, not the
         * first request, and its session ticket is read. */
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        if (kvi__redis_conn_append(conn, 1, argv, lens) != 0)
            return -1;
        conn->setup[conn->nsetup++] = SETUP_PING;
    }
    conn->state = KVI_REDIS_CS_SETUP;
    return conn->nsetup == 0;
}

static int starts_with(const redisReply *r, const char *prefix)
{
    return r->str != NULL && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

static int is_auth_error(const redisReply *r)
{
    return starts_with(r, "NOAUTH") || starts_with(r, "WRONGPASS") || starts_with(r, "NOPERM") ||
           strstr(r->str, "invalid password") || strstr(r->str, "invalid username-password") ||
           strstr(r->str, "without any password configured");
}

/* Checks one set-up reply: 0 fine, -1 failed. */
static int setup_reply(struct kvi_redis_conn *conn, int kind, const redisReply *r)
{
    const struct kvi_redis_conn_cfg *cfg = &conn->cfg;
    if (r->type != REDIS_REPLY_ERROR)
        return 0;
    /* The server's text may hold the password; the engine's message
     * function scrubs it before anyone sees it. */
    if (kind == SETUP_AUTH)
        return conn_fail(conn, KVI_E_AUTH, "authentication%s%s failed: %s", cfg->user ? " as " : "",
                         cfg->user ? cfg->user : "", r->str);
    if (starts_with(r, "LOADING"))
        return conn_fail(conn, KVI_E_BACKEND, "%s", r->str);
    if (kind == SETUP_SELECT)
        return conn_fail(conn, is_auth_error(r) ? KVI_E_AUTH : KVI_E_INVALID,
                         "cannot select database %ld: %s", cfg->db, r->str);
    if (is_auth_error(r))
        return conn_fail(conn, KVI_E_AUTH, "%s", r->str);
    return 0;
}

/* The socket is connected: options, then TLS or the set-up. */
static int connected(struct kvi_redis_conn *conn)
{
    int fd = conn->sock.fd, one = 1;
    if (conn->cfg.path == NULL) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Keepalive notices a peer that vanished without closing. */
        int idle = 15, intvl = 5, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
    /* Every call but a plain read asked to block says MSG_DONTWAIT; that
     * one read waits at most the timeout (0 = no limit, as SO_RCVTIMEO). */
    struct timeval tv = {(time_t)(conn->cfg.timeout_ms / 1000),
                         (suseconds_t)(conn->cfg.timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (conn->cfg.tls != NULL) {
        if (kvi__redis_tls_attach(&conn->sock, conn->cfg.tls, conn->cfg.host,
                                  conn->cfg.tls_cache) != 0)
            return sock_failed(conn);
        conn->state = KVI_REDIS_CS_HANDSHAKE;
        return 0;
    }
    int q = queue_setup(conn);
    if (q < 0)
        return -1;
    if (q == 1)
        conn->state = KVI_REDIS_CS_READY;
    return q;
}

/* Tries the next address of the host; -1 when none is left. */
static int try_next_address(struct kvi_redis_conn *conn, int last_errno)
{
    while (conn->next_addr < conn->addrs->n) {
        size_t i = conn->next_addr++;
        struct sockaddr_storage sa;
        socklen_t len = conn->addrs->len[i];
        memcpy(&sa, &conn->addrs->sa[i], sizeof sa);
        if (sa.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&sa)->sin6_port = htons(conn->cfg.port);
        else
            ((struct sockaddr_in *)&sa)->sin_port = htons(conn->cfg.port);
        int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        conn->sock.fd = fd;
        if (connect(fd, (struct sockaddr *)&sa, len) == 0)
            return connected(conn);
        if (errno == EINPROGRESS) {
            conn->state = KVI_REDIS_CS_CONNECT;
            conn->sock.want = POLLOUT;
            return 0;
        }
        last_errno = errno;
        close(fd);
        conn->sock.fd = -1;
    }
    return conn_fail(conn, KVI_E_CONNECT, "%s", strerror(last_errno));
}

/* See conn.h. */
int kvi__redis_conn_start(struct kvi_redis_conn *conn, const struct kvi_redis_conn_cfg *cfg)
{
    memset(conn, 0, sizeof *conn);
    conn->cfg = *cfg;
    conn->sock.fd = -1;
    conn->state = KVI_REDIS_CS_CONNECT;
    conn->tp = cfg->tls != NULL    ? &kvi__redis_tls
               : cfg->path != NULL ? &kvi__redis_unix
                                   : &kvi__redis_tcp;
    conn->reader = redisReaderCreate();
    if (conn->reader == NULL)
        return conn_fail(conn, KVI_E_NOMEM, "out of memory");
    if (cfg->path != NULL) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        if (strlen(cfg->path) >= sizeof sa.sun_path)
            return conn_fail(conn, KVI_E_INVALID, "socket path longer than %zu bytes",
                             sizeof sa.sun_path - 1);
        memcpy(sa.sun_path, cfg->path, strlen(cfg->path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return conn_fail(conn, KVI_E_CONNECT, "%s", strerror(errno));
        conn->sock.fd = fd;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return connected(conn) < 0 ? -1 : 0;
        if (errno == EINPROGRESS || errno == EAGAIN) {
            conn->sock.want = POLLOUT;
            return 0;
        }
        return conn_fail(conn, KVI_E_CONNECT, "%s", strerror(errno));
    }
    conn->addrs = cfg->addrs;
    if (conn->addrs == NULL) {
        /* Names were resolved before (resolve.h); here only an IP address
         * is parsed, never looked up. */
        char why[300];
        if (kvi__redis_addrlist_fill(cfg->host, 1, &conn->own, why, sizeof why) != 0)
            return conn_fail(conn, KVI_E_CONNECT, "%s",
                             cfg->resolve_err[0] != '\0' ? cfg->resolve_err : why);
        conn->addrs = &conn->own;
    }
    conn->next_addr = 0;
    return try_next_address(conn, ECONNREFUSED) < 0 ? -1 : 0;
}

/* See conn.h. */
int kvi__redis_conn_step(struct kvi_redis_conn *conn)
{
    for (;;) {
        switch (conn->state) {
        case KVI_REDIS_CS_CONNECT: {
            struct pollfd p = {.fd = conn->sock.fd, .events = POLLOUT};
            if (poll(&p, 1, 0) == 0) {
                conn->sock.want = POLLOUT;
                return 0;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(conn->sock.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
                soerr = errno;
            if (soerr != 0) {
                close(conn->sock.fd);
                conn->sock.fd = -1;
                if (conn->cfg.path != NULL)
                    return conn_fail(conn, KVI_E_CONNECT, "%s", strerror(soerr));
                if (try_next_address(conn, soerr) < 0)
                    return -1;
                continue;
            }
            if (connected(conn) < 0)
                return -1;
            continue;
        }
        case KVI_REDIS_CS_HANDSHAKE: {
            int h = conn->tp->handshake(&conn->sock);
            if (h == KVI_REDIS_NET_AGAIN)
                return 0;
            if (h < 0)
                return sock_failed(conn);
            int q = queue_setup(conn);
            if (q < 0)
                return -1;
            if (q == 1)
                conn->state = KVI_REDIS_CS_READY;
            continue;
        }
        case KVI_REDIS_CS_SETUP: {
            int f = kvi__redis_conn_flush(conn);
            if (f <= 0)
                return f;
            while (conn->setup_done < conn->nsetup) {
                redisReply *r = NULL;
                int rr = kvi__redis_conn_read(conn, 0, &r);
                if (rr <= 0)
                    return rr;
                int ok = setup_reply(conn, conn->setup[conn->setup_done], r);
                freeReplyObject(r);
                if (ok != 0)
                    return -1;
                conn->setup_done++;
            }
            conn->state = KVI_REDIS_CS_READY;
            return 1;
        }
        case KVI_REDIS_CS_READY:
            return 1;
        default:
            return -1;
        }
    }
}

/* See conn.h. */
void kvi__redis_conn_close(struct kvi_redis_conn *conn)
{
    if (conn->tp != NULL)
        conn->tp->close(&conn->sock);
    else if (conn->sock.fd >= 0)
        close(conn->sock.fd);
    conn->sock.fd = -1;
    conn->addrs = NULL;
    conn->next_addr = 0;
    if (conn->reader != NULL)
        redisReaderFree(conn->reader);
    conn->reader = NULL;
    free(conn->obuf);
    conn->obuf = NULL;
    conn->olen = conn->opos = conn->ocap = 0;
    conn->state = KVI_REDIS_CS_FAILED;
}

/* See conn.h. */
int kvi__redis_conn_idle_ok(struct kvi_redis_conn *conn)
{
    if (conn->state != KVI_REDIS_CS_READY)
        return 0;
    struct pollfd p = {.fd = conn->sock.fd, .events = POLLIN};
    if (poll(&p, 1, 0) == 0)
        return 1;
    if (conn->cfg.tls == NULL)
        return 0; /* closed, or bytes nobody asked for */
    /* TLS: the readable bytes may be a session ticket and nothing else. */
    char b[1];
    return conn->tp->read(&conn->sock, b, sizeof b, 0) == KVI_REDIS_NET_AGAIN;
}

/* ---------------------------------------------------------------------- */
/* Blocking helpers                                                        */

/* See conn.h. */
int kvi__redis_conn_wait(struct kvi_redis_conn *conn, int64_t deadline)
{
    for (;;) {
        int left = -1;
        if (deadline > 0) {
            int64_t d = deadline - kvi_monotonic_ms();
            if (d <= 0)
                return 0;
            left = d > INT32_MAX ? INT32_MAX : (int)d;
        }
        struct pollfd p = {.fd = conn->sock.fd, .events = conn->sock.want};
        int r = poll(&p, 1, left);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Waits for the connection's event; -1 (failed) when the deadline passed
 * or poll failed. */
static int wait_or_fail(struct kvi_redis_conn *conn, int64_t deadline)
{
    int w = kvi__redis_conn_wait(conn, deadline);
    if (w > 0)
        return 0;
    if (w < 0)
        return conn_fail(conn, KVI_E_IO, "poll: %s", strerror(errno));
    return kvi__redis_conn_timed_out(conn);
}

/* See conn.h. */
int kvi__redis_conn_timed_out(struct kvi_redis_conn *conn)
{
    int connecting = conn->state < KVI_REDIS_CS_READY;
    return conn_fail(conn, KVI_E_TIMEOUT, "timed out after %u ms%s",
                     (unsigned)(connecting ? conn->cfg.connect_timeout_ms : conn->cfg.timeout_ms),
                     conn->state == KVI_REDIS_CS_HANDSHAKE
                         ? " in the TLS handshake (does the server speak TLS on this port?)"
                         : "");
}

/* See conn.h. */
kvi_status kvi__redis_conn_open(struct kvi_redis_conn *conn, const struct kvi_redis_conn_cfg *cfg,
                                int64_t deadline)
{
    if (kvi__redis_conn_start(conn, cfg) < 0)
        return conn->st;
    for (;;) {
        int s = kvi__redis_conn_step(conn);
        if (s > 0)
            return KVI_OK;
        if (s < 0 || wait_or_fail(conn, deadline) < 0)
            return conn->st;
    }
}

static kvi_status flush_all(struct kvi_redis_conn *conn, int64_t deadline)
{
    for (;;) {
        int f = kvi__redis_conn_flush(conn);
        if (f > 0)
            return KVI_OK;
        if (f < 0 || wait_or_fail(conn, deadline) < 0)
            return conn->st;
    }
}

/* See conn.h. */
kvi_status kvi__redis_conn_reply(struct kvi_redis_conn *conn, int64_t deadline, redisReply **out)
{
    kvi_status s = flush_all(conn, deadline);
    if (s != KVI_OK)
        return s;
    /* The first read of a plain socket waits in recv() (bounded by
     * SO_RCVTIMEO): most replies arrive in one read, without a poll()
     * first, which cost ~5% against raw hiredis.  Later reads poll
     * against the whole call's deadline.  Over TLS the first read waits
     * for readiness first (block -1). */
    int block = conn->cfg.tls == NULL ? 1 : -1;
    for (;;) {
        int r = kvi__redis_conn_read(conn, block, out);
        block = 0;
        if (r > 0)
            return KVI_OK;
        if (r < 0 || wait_or_fail(conn, deadline) < 0)
            return conn->st;
    }
}

/* See conn.h. */
int kvi__redis_conn_read_deep(struct kvi_redis_conn *conn, struct kvi_redis_deep **d,
                              redisReply **out)
{
    char chunk[READ_CHUNK], err[128];
    if (conn->state == KVI_REDIS_CS_FAILED)
        return -1;
    if (*d == NULL && (*d = kvi__redis_deep_new()) == NULL)
        return conn_fail(conn, KVI_E_NOMEM, "out of memory");
    /* A reply may be complete in what an earlier read brought. */
    int done = kvi__redis_deep_feed(*d, chunk, 0, KVI_MAX_VALUE_LEN, out, err, sizeof err);
    while (done == 0) {
        ssize_t n = conn->tp->read(&conn->sock, chunk, sizeof chunk, 0);
        if (n == KVI_REDIS_NET_AGAIN)
            return 0;
        if (n == 0)
            return conn_fail(conn, KVI_E_CONNECT, "server closed the connection");
        if (n < 0)
            return sock_failed(conn);
        done = kvi__redis_deep_feed(*d, chunk, (size_t)n, KVI_MAX_VALUE_LEN, out, err, sizeof err);
    }
    if (done < 0)
        return conn_fail(conn, KVI_E_PROTOCOL, "%s", err);
    conn->answered = 1;
    return 1;
}

/* See conn.h. */
kvi_status kvi__redis_conn_reply_deep(struct kvi_redis_conn *conn, int64_t deadline,
                                      redisReply **out)
{
    kvi_status s = flush_all(conn, deadline);
    if (s != KVI_OK)
        return s;
    struct kvi_redis_deep *d = NULL;
    int r;
    while ((r = kvi__redis_conn_read_deep(conn, &d, out)) == 0)
        if (wait_or_fail(conn, deadline) < 0)
            break;
    kvi__redis_deep_free(d);
    return r > 0 ? KVI_OK : conn->st;
}
