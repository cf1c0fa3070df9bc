/*
 * testtls.h -- TLS for kvi's tests (prefix kvi_tt_): certificates made by
 * `openssl` at test time, and a redis-server that speaks TLS, on top of
 * testserver.h.
 *
 *     char *dir;
 *     kvi_ts_make_tempdir("tls", &dir);
 *     if (kvi_tt_make_certs(dir) == KVI_TS_MISSING) ... skip ...
 *     kvi_ts_server *s;
 *     uint16_t tls_port;
 *     kvi_tt_redis_start(&s, dir, "server", 0, NULL, &tls_port);
 *     // "redis://localhost:<tls_port>/?tls=yes&tls_ca=<dir>/ca.pem"
 *
 * Files kvi_tt_make_certs() writes into dir (PEM, EC P-256 keys, valid for
 * two days unless said otherwise):
 *   ca.pem ca.key              the test CA
 *   other-ca.pem               an unrelated CA (a wrong tls_ca)
 *   server.pem server.key      CN=localhost, SAN DNS:localhost IP:127.0.0.1, by ca
 *   wrongname.pem .key         SAN DNS:wrong.example only, by ca
 *   expired.pem expired.key    as server, but expired yesterday
 *   client.pem client.key      a client certificate (clientAuth), by ca
 */
#ifndef KVI_TESTTLS_H
#define KVI_TESTTLS_H

#include <stdint.h>

#include "testserver.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the files above into dir.  KVI_TS_MISSING when openssl is not on
 * PATH (skip), KVI_TS_FAILED when it fails (message in kvi_ts_errmsg()). */
kvi_ts_result kvi_tt_make_certs(const char *dir);

/*
 * Starts redis-server with a plain port (for the readiness probe and
 * kvi_ts_port) and a TLS port (*tls_port, picked free) using the
 * certificate <certdir>/<cert>.pem and its key, the CA <certdir>/ca.pem
 * for client certificates, and tls-auth-clients yes when auth_clients
 * (else no).  extra: more arguments, NULL-terminated, may be NULL.
 * Results as kvi_ts_redis_start().
 */
kvi_ts_result kvi_tt_redis_start(kvi_ts_server **out, const char *certdir, const char *cert,
                                 int auth_clients, const char *const *extra, uint16_t *tls_port);

#ifdef __cplusplus
}
#endif

#endif /* KVI_TESTTLS_H */
