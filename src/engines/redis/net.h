/*
 * net.h -- the byte streams under a redis connection: a TCP or unix socket,
 * plain or wrapped in TLS (OpenSSL), behind one ops struct (as Redis's
 * connection.h), so that the protocol code (conn.c) never knows which one
 * it talks over.  Nothing here blocks except a plain read asked to block
 * (the socket's SO_RCVTIMEO bounds it); every other call returns
 * KVI_REDIS_NET_AGAIN with the events to wait for in sock->want.
 * Knows nothing of the redis engine above: settings come as values.
 */
#ifndef KVI_REDIS_NET_H
#define KVI_REDIS_NET_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "kvi/engine.h"

/* read/write/handshake: "try again once sock->want (POLLIN/POLLOUT) is
 * ready". */
#define KVI_REDIS_NET_AGAIN (-2)

/* One open socket, plain or TLS. */
struct kvi_redis_sock {
    int fd;
    SSL *ssl;      /* TLS only */
    short want;    /* POLLIN or POLLOUT: what the last AGAIN waits for */
    kvi_status st; /* after an error: its status */
    char err[224]; /* after an error: what happened (OpenSSL's reason) */
};

/*
 * The operations of a transport.  handshake: 1 done, AGAIN, -1 failed
 * (st, err set).  read: bytes read (> 0), 0 at end of stream, AGAIN, -1
 * failed (st, err set); block asks a plain socket to wait (SO_RCVTIMEO);
 * TLS never blocks.  write: bytes written (> 0), AGAIN, -1 failed.  close
 * releases everything (also after a failure); fd becomes -1.
 */
struct kvi_redis_transport {
    const char *name; /* "tcp", "unix", "tls" */
    int (*handshake)(struct kvi_redis_sock *s);
    ssize_t (*read)(struct kvi_redis_sock *s, void *buf, size_t len, int block);
    ssize_t (*write)(struct kvi_redis_sock *s, const void *buf, size_t len);
    void (*close)(struct kvi_redis_sock *s);
};

extern const struct kvi_redis_transport kvi__redis_tcp;
extern const struct kvi_redis_transport kvi__redis_unix;
extern const struct kvi_redis_transport kvi__redis_tls;

/* The TLS settings of a URL, made once by kvi__redis_tls_new(); read-only
 * and shared by every connection afterwards. */
struct kvi_redis_tls {
    SSL_CTX *ctx;
    char *sni;  /* tls_sni, or NULL: the host when it is a name */
    int verify; /* check the chain and the host name or address */
};

/* The TLS options as the URL gave them (NULL: not given). */
struct kvi_redis_tls_opts {
    const char *ca;   /* file or directory; NULL: the system's trust store */
    const char *cert; /* client certificate chain (PEM) */
    const char *key;  /* its private key (PEM); NULL: in cert's file */
    const char *sni;
    int verify;
};

/* Makes the TLS settings: KVI_OK with *out (free with
 * kvi__redis_tls_free), else KVI_E_INVALID with a message in err naming
 * the file and OpenSSL's reason. */
kvi_status kvi__redis_tls_new(const struct kvi_redis_tls_opts *o, struct kvi_redis_tls **out,
                              char *err, size_t errlen);
void kvi__redis_tls_free(struct kvi_redis_tls *t);

/* The last TLS session a server gave (for resumption on the next connect
 * to the same server); one per server, thread-safe. */
struct kvi_redis_tls_cache {
    pthread_mutex_t mu;
    SSL_SESSION *session;
    unsigned long resumed; /* handshakes that reused it (statistics, tests) */
};
void kvi__redis_tls_cache_init(struct kvi_redis_tls_cache *tc);
/* destroy_mutex 0: a parent's cache in a forked child. */
void kvi__redis_tls_cache_free(struct kvi_redis_tls_cache *tc, int destroy_mutex);

/* Wraps the connected socket s->fd in TLS for a server reached as host
 * (NULL for a unix socket): SNI, name or address check, the cached session.
 * 0, or -1 with st/err set. */
int kvi__redis_tls_attach(struct kvi_redis_sock *s, const struct kvi_redis_tls *t, const char *host,
                          struct kvi_redis_tls_cache *tc);

/* 1 when the TLS handshake of s resumed a session. */
int kvi__redis_tls_resumed(const struct kvi_redis_sock *s);

#endif /* KVI_REDIS_NET_H */
