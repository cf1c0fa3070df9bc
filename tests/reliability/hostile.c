/* hostile.c -- misbehaving fake servers (see hostile.h). */
#include "hostile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testclock.h"

/* A connection is dropped by the server after this long at the latest, so
 * that a client that never gives up cannot hang the test forever. */
#define MAX_CONN_MS 6000
/* ... and an endless stream stops after this many bytes, so that a client
 * that buffers everything cannot take the machine down. */
#define MAX_STREAM_BYTES (256u << 20)
#define MAX_CONNS 256

struct conn {
    rel_hostile *h;
    int fd;
    pthread_t tid;
};

struct rel_hostile {
    rel_proto proto;
    rel_hostile_mode mode;
    int lfd;
    uint16_t port;
    atomic_int stop;
    atomic_uint accepted;
    atomic_uint_least64_t sent;
    pthread_t acceptor;
    pthread_mutex_t mu;
    struct conn *conns[MAX_CONNS];
    size_t nconns;
};

static const char *const mode_names[REL_H_COUNT] = {
    "garbage", "huge-length", "huge-length-stream", "half-reply", "trickle", "silent", "close"};

const char *rel_hostile_mode_name(rel_hostile_mode m)
{
    return (unsigned)m < REL_H_COUNT ? mode_names[m] : "?";
}

/* Sends all of buf unless the peer goes away; 0 or -1. */
static int send_all(rel_hostile *h, int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            if (atomic_load(&h->stop))
                return -1;
            poll(&pfd, 1, 50);
            continue;
        }
        if (n <= 0)
            return -1;
        atomic_fetch_add(&h->sent, (uint64_t)n);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A memcached binary response header for request req (24 bytes). */
static void mc_header(unsigned char *out, const unsigned char *req, size_t req_len,
                      uint32_t body_len)
{
    memset(out, 0, 24);
    out[0] = 0x81;
    out[1] = req_len >= 2 ? req[1] : 0;
    out[8] = (unsigned char)(body_len >> 24);
    out[9] = (unsigned char)(body_len >> 16);
    out[10] = (unsigned char)(body_len >> 8);
    out[11] = (unsigned char)body_len;
    if (req_len >= 16)
        memcpy(out + 12, req + 12, 4); /* opaque */
}

/* What the connection answers to a request; returns -1 to close. */
static int answer(rel_hostile *h, int fd, const unsigned char *req, size_t req_len, int *answered)
{
    int redis = h->proto == REL_PROTO_REDIS;
    unsigned char hdr[24];
    switch (h->mode) {
    case REL_H_GARBAGE: {
        static const char junk[] = "!?garbage\xff\xfe\x00\x01 not a reply\r\n"
                                   "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f";
        return send_all(h, fd, junk, sizeof junk - 1);
    }
    case REL_H_HUGE:
    case REL_H_HUGE_STREAM:
        if (*answered)
            return 0;
        *answered = 1;
        if (redis)
            return send_all(h, fd, "$999999999999\r\n", 15);
        mc_header(hdr, req, req_len, 0xFFFFFFF0u);
        return send_all(h, fd, hdr, sizeof hdr);
    case REL_H_HALF:
        if (*answered)
            return 0;
        *answered = 1;
        if (redis)
            return send_all(h, fd, "$10\r\nabc", 8);
        mc_header(hdr, req, req_len, 0);
        return send_all(h, fd, hdr, 12);
    case REL_H_TRICKLE:
        *answered = 1; /* the connection loop sends the bytes */
        return 0;
    case REL_H_CLOSE:
        return -1;
    case REL_H_SILENT:
    default:
        return 0;
    }
}

static void *conn_main(void *arg)
{
    struct conn *cn = arg;
    rel_hostile *h = cn->h;
    int fd = cn->fd;
    int answered = 0;
    int64_t start = kvi_test_mono_ms(), next_trickle = 0;
    size_t trickled = 0;
    uint64_t streamed = 0;
    unsigned char req[4096], hdr[24];
    size_t req_len = 0;
    static char stream_buf[65536];

    while (!atomic_load(&h->stop) && kvi_test_mono_ms() - start < MAX_CONN_MS) {
        int streaming = h->mode == REL_H_HUGE_STREAM && answered && streamed < MAX_STREAM_BYTES;
        struct pollfd pfd = {fd, (short)(POLLIN | (streaming ? POLLOUT : 0)), 0};
        int pr = poll(&pfd, 1, 20);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = recv(fd, req, sizeof req, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break;
            if (n > 0) {
                req_len = (size_t)n;
                if (answer(h, fd, req, req_len, &answered) != 0)
                    break;
                if (h->mode == REL_H_TRICKLE && next_trickle == 0)
                    next_trickle = kvi_test_mono_ms();
            }
        }
        if (streaming && (pfd.revents & POLLOUT)) {
            ssize_t n = send(fd, stream_buf, sizeof stream_buf, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                break;
            if (n > 0) {
                atomic_fetch_add(&h->sent, (uint64_t)n);
                streamed += (uint64_t)n;
            }
        }
        if (h->mode == REL_H_TRICKLE && next_trickle != 0 && kvi_test_mono_ms() >= next_trickle) {
            /* redis: a status line that never ends; memcached: a header
             * then a body, one byte at a time. */
            unsigned char b;
            if (h->proto == REL_PROTO_REDIS) {
                b = trickled == 0 ? '+' : 'x';
            } else {
                mc_header(hdr, req, req_len, 0x00100000u);
                b = trickled < sizeof hdr ? hdr[trickled] : 'x';
            }
            if (send_all(h, fd, &b, 1) != 0)
                break;
            trickled++;
            next_trickle += 1000;
        }
    }
    close(fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    rel_hostile *h = arg;
    while (!atomic_load(&h->stop)) {
        struct pollfd pfd = {h->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(h->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&h->accepted, 1);
        struct conn *cn = calloc(1, sizeof *cn);
        pthread_mutex_lock(&h->mu);
        if (cn == NULL || h->nconns == MAX_CONNS) {
            pthread_mutex_unlock(&h->mu);
            free(cn);
            close(fd);
            continue;
        }
        cn->h = h;
        cn->fd = fd;
        if (pthread_create(&cn->tid, NULL, conn_main, cn) != 0) {
            pthread_mutex_unlock(&h->mu);
            free(cn);
            close(fd);
            continue;
        }
        h->conns[h->nconns++] = cn;
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

int rel_hostile_start(rel_hostile **out, rel_proto proto, rel_hostile_mode mode)
{
    rel_hostile *h = calloc(1, sizeof *h);
    if (h == NULL)
        return -1;
    h->proto = proto;
    h->mode = mode;
    pthread_mutex_init(&h->mu, NULL);
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (h->lfd < 0 || bind(h->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(h->lfd, 64) != 0 || getsockname(h->lfd, (struct sockaddr *)&a, &alen) != 0 ||
        pthread_create(&h->acceptor, NULL, accept_main, h) != 0) {
        if (h->lfd >= 0)
            close(h->lfd);
        free(h);
        return -1;
    }
    h->port = ntohs(a.sin_port);
    *out = h;
    return 0;
}

uint16_t rel_hostile_port(const rel_hostile *h)
{
    return h->port;
}

unsigned rel_hostile_accepted(const rel_hostile *h)
{
    return atomic_load(&h->accepted);
}

uint64_t rel_hostile_sent(const rel_hostile *h)
{
    return atomic_load(&h->sent);
}

void rel_hostile_stop(rel_hostile *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stop, 1);
    pthread_join(h->acceptor, NULL);
    close(h->lfd);
    for (size_t i = 0; i < h->nconns; i++) {
        pthread_join(h->conns[i]->tid, NULL);
        free(h->conns[i]);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}
