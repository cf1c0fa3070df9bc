/*
 * net.c -- plain and TLS byte streams (see net.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "net.h"

/* ---------------------------------------------------------------------- */
/* Plain sockets                                                           */

static int sock_fail(struct kvi_redis_sock *s, kvi_status st, const char *what, int err_no)
{
    s->st = st;
    snprintf(s->err, sizeof s->err, "%s%s%s", what, err_no != 0 ? ": " : "",
             err_no != 0 ? strerror(err_no) : "");
    return -1;
}

static kvi_status errno_status(int err_no)
{
    return err_no == ECONNRESET || err_no == EPIPE || err_no == ENOTCONN ||
                   err_no == ECONNREFUSED || err_no == ECONNABORTED
               ? KVI_E_CONNECT
               : KVI_E_IO;
}

static int plain_handshake(struct kvi_redis_sock *s)
{
    (void)s;
    return 1;
}

static ssize_t plain_read(struct kvi_redis_sock *s, void *buf, size_t len, int block)
{
    for (;;) {
        ssize_t n = recv(s->fd, buf, len, block ? 0 : MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->want = POLLIN;
            return KVI_REDIS_NET_AGAIN;
        }
        return sock_fail(s, errno_status(errno), "read", errno);
    }
}

static ssize_t plain_write(struct kvi_redis_sock *s, const void *buf, size_t len)
{
    for (;;) {
        /* MSG_NOSIGNAL: a closed peer is an error here, not SIGPIPE. */
        ssize_t n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->want = POLLOUT;
            return KVI_REDIS_NET_AGAIN;
        }
        return sock_fail(s, errno_status(errno), "write", errno);
    }
}

static void plain_close(struct kvi_redis_sock *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

const struct kvi_redis_transport kvi__redis_tcp = {
    .name = "tcp",
    .handshake = plain_handshake,
    .read = plain_read,
    .write = plain_write,
    .close = plain_close,
};

const struct kvi_redis_transport kvi__redis_unix = {
    .name = "unix",
    .handshake = plain_handshake,
    .read = plain_read,
    .write = plain_write,
    .close = plain_close,
};

/* ---------------------------------------------------------------------- */
/* TLS                                                                     */

/* OpenSSL talks to the socket through this BIO: send() with MSG_NOSIGNAL
 * (no SIGPIPE from a closed peer) and never a blocking call. */
static BIO_METHOD *bio_method;
/* The connection's kvi_redis_tls_cache rides in the SSL's application
 * data slot (SSL_set_app_data: ex_data index 0, always there).  A slot of
 * our own (SSL_get_ex_new_index) would be allocated on every load of the
 * module and could not be given back safely at exit: LeakSanitizer
 * reported it on a fresh Debian root (OpenSSL 3.0.22). */
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *data, int len)
{
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = send(bio_fd(b), data, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(b);
        return -1;
    }
}

static int bio_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = recv(bio_fd(b), buf, (size_t)len, MSG_DONTWAIT);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(b);
        return -1;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void tls_init_once(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kvi-redis-socket");
    if (bio_method != NULL) {
        BIO_meth_set_write(bio_method, bio_write);
        BIO_meth_set_read(bio_method, bio_read);
        BIO_meth_set_ctrl(bio_method, bio_ctrl);
        BIO_meth_set_create(bio_method, bio_create);
    }
}

/* The module may be unloaded (dlclose) and loaded again: the BIO method
 * goes with it.  (Only a plain free: at exit this may run after OpenSSL's
 * own clean-up.) */
__attribute__((destructor)) static void tls_fini(void)
{
    if (bio_method != NULL)
        BIO_meth_free(bio_method);
    bio_method = NULL;
}

/* A server sent a session (TLS 1.3: after the handshake): keep a copy of
 * the newest one per server for the next connect.  A copy: OpenSSL marks
 * the connection's own session unusable when the connection ends without
 * a close_notify, as ours do. */
static int new_session(SSL *ssl, SSL_SESSION *given)
{
    struct kvi_redis_tls_cache *tc = SSL_get_app_data(ssl);
    if (tc == NULL || !SSL_SESSION_is_resumable(given))
        return 0;
    SSL_SESSION *sess = SSL_SESSION_dup(given);
    if (sess == NULL)
        return 0;
    pthread_mutex_lock(&tc->mu);
    SSL_SESSION *old = tc->session;
    tc->session = sess;
    pthread_mutex_unlock(&tc->mu);
    SSL_SESSION_free(old);
    return 0; /* OpenSSL keeps its own reference to given */
}

/* The reason of the newest OpenSSL error, or NULL; clears the queue. */
static unsigned long last_error(void)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    return last;
}

/* An alert or failure that says a certificate was refused (by either
 * side): a credentials problem, not a network one. */
static int cert_reason(int reason)
{
    switch (reason) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
        return 1;
    default:
        return 0;
    }
}

/* Bytes that are no TLS record: the server speaks something else. */
static int not_tls_reason(int reason)
{
    return reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
           reason == SSL_R_HTTP_REQUEST || reason == SSL_R_UNKNOWN_PROTOCOL ||
           reason == SSL_R_UNEXPECTED_RECORD;
}

/* After a failed SSL call that returned ret: AGAIN (want set), 0 (end of
 * stream) or -1 with st/err. */
static int tls_result(struct kvi_redis_sock *s, int ret, int handshaking)
{
    int e = SSL_get_error(s->ssl, ret);
    int err_no = errno;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return KVI_REDIS_NET_AGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    unsigned long ec = last_error();
    int reason = ec != 0 ? ERR_GET_REASON(ec) : 0;
    long vr = SSL_get_verify_result(s->ssl);
    if (handshaking && vr != X509_V_OK) {
        s->st = KVI_E_AUTH;
        const char *hint =
            vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH
                ? "it does not name this host; tls_sni sets the name to check"
            : vr == X509_V_ERR_CERT_HAS_EXPIRED || vr == X509_V_ERR_CERT_NOT_YET_VALID
                ? "the server needs a valid certificate"
                : "is tls_ca the CA that signed it?";
        snprintf(s->err, sizeof s->err, "TLS: server certificate refused: %s (%s)",
                 X509_verify_cert_error_string(vr), hint);
        return -1;
    }
    if (ec != 0 && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING && !handshaking)
        return 0;
    if (ec != 0) {
        const char *why = ERR_reason_error_string(ec);
        s->st = cert_reason(reason)      ? KVI_E_AUTH
                : not_tls_reason(reason) ? KVI_E_PROTOCOL
                                         : KVI_E_CONNECT;
        snprintf(s->err, sizeof s->err, "TLS: %s%s", why != NULL ? why : "error",
                 not_tls_reason(reason) ? " (the server does not speak TLS on this port?)"
                 : cert_reason(reason)
                     ? " (the server refused our certificate or wants one: tls_cert, tls_key)"
                     : "");
        return -1;
    }
    if (e == SSL_ERROR_SYSCALL && err_no != 0 && ret < 0) {
        s->st = errno_status(err_no);
        snprintf(s->err, sizeof s->err, "TLS: %s", strerror(err_no));
        return -1;
    }
    if (!handshaking)
        return 0;
    s->st = KVI_E_CONNECT;
    snprintf(s->err, sizeof s->err,
             "TLS: the server closed the connection during the handshake (not a TLS port, or "
             "it refused our certificate?)");
    return -1;
}

static int tls_handshake(struct kvi_redis_sock *s)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(s->ssl);
    if (r == 1) {
        struct kvi_redis_tls_cache *tc = SSL_get_app_data(s->ssl);
        if (tc != NULL && SSL_session_reused(s->ssl)) {
            pthread_mutex_lock(&tc->mu);
            tc->resumed++;
            pthread_mutex_unlock(&tc->mu);
        }
        return 1;
    }
    return tls_result(s, r, 1);
}

static ssize_t tls_read(struct kvi_redis_sock *s, void *buf, size_t len, int block)
{
    (void)block;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(s->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0)
        return r;
    return tls_result(s, r, 0);
}

static ssize_t tls_write(struct kvi_redis_sock *s, const void *buf, size_t len)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(s->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0)
        return r;
    int t = tls_result(s, r, 0);
    if (t == 0) {
        s->st = KVI_E_CONNECT;
        snprintf(s->err, sizeof s->err, "TLS: the server closed the connection");
        return -1;
    }
    return t;
}

static void tls_close(struct kvi_redis_sock *s)
{
    if (s->ssl != NULL) {
        /* No close_notify exchange: it could block, and the server does
         * not need it. */
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    plain_close(s);
}

const struct kvi_redis_transport kvi__redis_tls = {
    .name = "tls",
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .close = tls_close,
};

static void ssl_reason(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long ec = last_error();
    const char *why = ec != 0 ? ERR_reason_error_string(ec) : NULL;
    snprintf(err, errlen, "%s %s: %s", what, file, why != NULL ? why : "cannot be used");
}

/* See net.h. */
kvi_status kvi__redis_tls_new(const struct kvi_redis_tls_opts *o, struct kvi_redis_tls **out,
                              char *err, size_t errlen)
{
    pthread_once(&tls_once, tls_init_once);
    if (bio_method == NULL) {
        snprintf(err, errlen, "TLS: OpenSSL could not be initialised");
        return KVI_E_INTERNAL;
    }
    struct kvi_redis_tls *t = calloc(1, sizeof *t);
    if (t == NULL || (o->sni != NULL && (t->sni = strdup(o->sni)) == NULL) ||
        (t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        kvi__redis_tls_free(t);
        snprintf(err, errlen, "TLS: out of memory");
        return KVI_E_NOMEM;
    }
    SSL_CTX *ctx = t->ctx;
    t->verify = o->verify;
    ERR_clear_error();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
    SSL_CTX_set_verify(ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    kvi_status st = KVI_OK;
    struct stat sb;
    if (o->ca != NULL) {
        int dir = stat(o->ca, &sb) == 0 && S_ISDIR(sb.st_mode);
        if (SSL_CTX_load_verify_locations(ctx, dir ? NULL : o->ca, dir ? o->ca : NULL) != 1) {
            ssl_reason(err, errlen, "tls_ca", o->ca);
            st = KVI_E_INVALID;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_reason(err, errlen, "TLS: the system's trust store", "");
        st = KVI_E_INVALID;
    }
    if (st == KVI_OK && o->cert != NULL) {
        const char *key = o->key != NULL ? o->key : o->cert;
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
            ssl_reason(err, errlen, "tls_cert", o->cert);
            st = KVI_E_INVALID;
        } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            ssl_reason(err, errlen, "tls_key", key);
            st = KVI_E_INVALID;
        } else if (SSL_CTX_check_private_key(ctx) != 1) {
            ssl_reason(err, errlen, "tls_key does not match tls_cert:", key);
            st = KVI_E_INVALID;
        }
    }
    if (st != KVI_OK) {
        kvi__redis_tls_free(t);
        return st;
    }
    *out = t;
    return KVI_OK;
}

/* See net.h. */
void kvi__redis_tls_free(struct kvi_redis_tls *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t->sni);
    free(t);
}

/* See net.h. */
void kvi__redis_tls_cache_init(struct kvi_redis_tls_cache *tc)
{
    pthread_mutex_init(&tc->mu, NULL);
    tc->session = NULL;
    tc->resumed = 0;
}

/* See net.h. */
void kvi__redis_tls_cache_free(struct kvi_redis_tls_cache *tc, int destroy_mutex)
{
    SSL_SESSION_free(tc->session);
    tc->session = NULL;
    if (destroy_mutex)
        pthread_mutex_destroy(&tc->mu);
}

static int is_ip_address(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* See net.h. */
int kvi__redis_tls_attach(struct kvi_redis_sock *s, const struct kvi_redis_tls *t, const char *host,
                          struct kvi_redis_tls_cache *tc)
{
    ERR_clear_error();
    s->ssl = SSL_new(t->ctx);
    BIO *bio = s->ssl != NULL ? BIO_new(bio_method) : NULL;
    if (bio == NULL) {
        s->st = KVI_E_NOMEM;
        snprintf(s->err, sizeof s->err, "TLS: out of memory");
        return -1;
    }
    BIO_set_data(bio, (void *)(intptr_t)s->fd);
    SSL_set_bio(s->ssl, bio, bio);
    SSL_set_connect_state(s->ssl);
    const char *name = t->sni != NULL ? t->sni : host;
    int ok = 1;
    if (name != NULL && !is_ip_address(name)) {
        ok = SSL_set_tlsext_host_name(s->ssl, name) == 1;
        if (ok && t->verify)
            ok = SSL_set1_host(s->ssl, name) == 1;
    } else if (name != NULL && t->verify) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), name) == 1;
    }
    if (!ok) {
        s->st = KVI_E_INVALID;
        snprintf(s->err, sizeof s->err, "TLS: cannot use the name \"%.100s\"", name);
        return -1;
    }
    if (tc != NULL) {
        SSL_set_app_data(s->ssl, tc);
        pthread_mutex_lock(&tc->mu);
        if (tc->session != NULL)
            SSL_set_session(s->ssl, tc->session);
        pthread_mutex_unlock(&tc->mu);
    }
    return 0;
}

/* See net.h. */
int kvi__redis_tls_resumed(const struct kvi_redis_sock *s)
{
    return s->ssl != NULL && SSL_session_reused(s->ssl);
}
