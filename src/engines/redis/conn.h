/*
 * conn.h -- one connection to one Redis server, as a state machine that
 * never blocks inside: connect (with every address of the host in turn),
 * TLS handshake, the set-up requests (AUTH, SELECT, a PING over TLS), then
 * requests and replies.  Each step either advances or says which event of
 * which descriptor it waits for (conn->sock.fd, conn->sock.want); the
 * caller's loop -- the blocking helpers below (a poll with the remaining
 * deadline), or an event loop -- resumes it.  Replies are read with
 * hiredis's public redisReader API (redisReply trees, freed with
 * freeReplyObject); a length guard refuses a string longer than
 * KVI_MAX_VALUE_LEN before it is buffered.
 *
 * Knows nothing of the redis engine: its settings come as a value
 * (struct kvi_redis_conn_cfg); errors are a status and a message in
 * conn->err (never holding the password).  Not thread-safe: one thread
 * drives one connection at a time.
 */
#ifndef KVI_REDIS_CONN_H
#define KVI_REDIS_CONN_H

#include <hiredis/read.h>
#include <netdb.h>

#include "net.h"
#include "resolve.h"

/* Where and how to connect.  Strings are borrowed: they must outlive the
 * connection. */
struct kvi_redis_conn_cfg {
    const char *host; /* name or address; NULL with path */
    uint16_t port;
    /* host's addresses, found before (resolve.h); NULL: host must be an IP
     * address, parsed without any resolver call (a name then fails) */
    const struct kvi_redis_addrlist *addrs;
    char resolve_err[160]; /* with addrs NULL: why host was not resolved, or "" */
    const char *path;                      /* unix socket or NULL */
    const char *name;                      /* "host:port" or the path, for messages */
    const struct kvi_redis_tls *tls;       /* NULL: plain */
    struct kvi_redis_tls_cache *tls_cache; /* session reuse; may be NULL */
    const char *user;                      /* AUTH user or NULL */
    const char *password;                  /* NULL: no AUTH */
    long db;                               /* SELECT when > 0 */
    uint32_t connect_timeout_ms;           /* for messages; the caller's deadline enforces it */
    uint32_t timeout_ms;                   /* SO_RCVTIMEO of blocking reads; 0 = none */
};

enum kvi_redis_conn_state {
    KVI_REDIS_CS_CONNECT = 0, /* TCP/unix connect under way */
    KVI_REDIS_CS_HANDSHAKE,   /* TLS handshake */
    KVI_REDIS_CS_SETUP,       /* set-up requests sent, replies awaited */
    KVI_REDIS_CS_READY,       /* requests may be sent */
    KVI_REDIS_CS_FAILED       /* unusable: close it */
};

struct kvi_redis_guard {
    int state;
    int neg;
    uint64_t n;
};

struct kvi_redis_conn {
    struct kvi_redis_conn_cfg cfg;
    const struct kvi_redis_transport *tp;
    struct kvi_redis_sock sock;
    int state; /* enum kvi_redis_conn_state */
    const struct kvi_redis_addrlist *addrs; /* cfg.addrs, or &own */
    size_t next_addr;                       /* the next one to try */
    struct kvi_redis_addrlist own;          /* an IP address parsed here */
    redisReader *reader;
    struct kvi_redis_guard guard;
    char *obuf; /* requests not yet written: obuf[opos..olen) */
    size_t olen, opos, ocap;
    int setup[3]; /* kinds of the set-up replies awaited */
    int nsetup, setup_done;
    int answered;  /* a reply has been read since connect */
    kvi_status st; /* after a failure */
    char err[320]; /* after a failure: "connect to NAME: why" */
};

/*
 * Starts connecting (to each of cfg->addrs in turn; never a resolver
 * call, so never a wait outside the caller's loop): 0 under way (wait for conn->sock.want on
 * conn->sock.fd, then call kvi__redis_conn_step), -1 failed (conn->st,
 * conn->err).  Always release with kvi__redis_conn_close, also after a
 * failure.
 */
int kvi__redis_conn_start(struct kvi_redis_conn *conn, const struct kvi_redis_conn_cfg *cfg);

/* Advances connect / handshake / set-up: 1 ready, 0 waiting (sock.want),
 * -1 failed. */
int kvi__redis_conn_step(struct kvi_redis_conn *conn);

/* Closes the socket and frees every buffer; conn may be started again. */
void kvi__redis_conn_close(struct kvi_redis_conn *conn);

/* Appends one request (argc words) to the output buffer: 0, or -1 when out
 * of memory (conn failed). */
int kvi__redis_conn_append(struct kvi_redis_conn *conn, int argc, const char *const *argv,
                           const size_t *lens);

/* Writes out what was appended: 1 all written, 0 waiting (sock.want), -1
 * failed. */
int kvi__redis_conn_flush(struct kvi_redis_conn *conn);

/* Reads one reply: 1 with *out (free with freeReplyObject), 0 waiting,
 * -1 failed.  block > 0: a plain socket may wait in read (SO_RCVTIMEO);
 * block < 0: over TLS, wait (return 0) before trying the socket unless
 * OpenSSL holds bytes already; 0: try the socket, never wait. */
int kvi__redis_conn_read(struct kvi_redis_conn *conn, int block, redisReply **out);

/* Reads one reply with deep.c's reader (any depth to KVI_REDIS_DEEP_MAX),
 * never waiting: 1 with *out (free with freeReplyObject), 0 waiting
 * (sock.want), -1 failed.  *d is the reader, made at the first call (NULL
 * before) and kept for the next replies of the same pipeline (bytes of a
 * later reply stay in it); free it with kvi__redis_deep_free.  Reads
 * straight from the socket: nothing may be buffered in conn->reader. */
struct kvi_redis_deep;
int kvi__redis_conn_read_deep(struct kvi_redis_conn *conn, struct kvi_redis_deep **d,
                              redisReply **out);

/* 1 when an idle connection still looks usable: no end of stream, no
 * unexpected bytes (a TLS session ticket is consumed, not held against
 * it). */
int kvi__redis_conn_idle_ok(struct kvi_redis_conn *conn);

/* Marks conn failed because its step did not come within its time limit
 * (connect_timeout while connecting, else timeout), with the message the
 * blocking helpers give ("connect to NAME: timed out after N ms"): -1. */
int kvi__redis_conn_timed_out(struct kvi_redis_conn *conn);

/* --- blocking helpers: loops over the steps, polling with the remaining
 * time to deadline (monotonic ms; 0 = none). --- */

/* Waits until sock.want is ready: 1 ready, 0 deadline passed, -1 poll
 * failed. */
int kvi__redis_conn_wait(struct kvi_redis_conn *conn, int64_t deadline);

/* Connects and sets up before deadline: KVI_OK, or the status with
 * conn->err ("connect to NAME: ..."). */
kvi_status kvi__redis_conn_open(struct kvi_redis_conn *conn, const struct kvi_redis_conn_cfg *cfg,
                                int64_t deadline);

/* Writes out what was appended and reads one reply, all before deadline:
 * KVI_OK with *out, else the status with conn->err ("request to NAME:
 * ..."); a failed connection must be closed. */
kvi_status kvi__redis_conn_reply(struct kvi_redis_conn *conn, int64_t deadline, redisReply **out);

/* Writes out what was appended and reads one reply with deep.c (any depth
 * to KVI_REDIS_DEEP_MAX), before deadline.  Nothing may be buffered for an
 * earlier reply. */
kvi_status kvi__redis_conn_reply_deep(struct kvi_redis_conn *conn, int64_t deadline,
                                      redisReply **out);

#endif /* KVI_REDIS_CONN_H */
