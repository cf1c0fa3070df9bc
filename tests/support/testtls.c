/*
 * testtls.c -- certificates and TLS servers for the tests (see testtls.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testtls.h"

/* Shell script that makes every file; $1 is the directory. */
static const char certs_script[] =
    "set -e; cd \"$1\"; umask 077;"
    "EC='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1';"
    "mk_ca() { openssl req -x509 $EC -nodes -keyout $1.key -out $1.pem -days 2 -subj /CN=$2; };"
    "mk() { openssl req $EC -nodes -keyout $1.key -out $1.csr -subj /CN=$2;"
    "  printf '%s\\n' \"$3\" > $1.ext;"
    "  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $1.pem"
    "    -days $4 -extfile $1.ext; rm -f $1.csr $1.ext; };"
    "mk_ca ca kvi-test-ca; mk_ca other-ca kvi-other-ca;"
    "mk server localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1' 2;"
    "mk wrongname wrong.example 'subjectAltName=DNS:wrong.example' 2;"
    "mk expired localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1' -1;"
    "mk client kvi-client 'extendedKeyUsage=clientAuth' 2;"
    "chmod 644 *.pem *.key";

/* See testtls.h. */
kvi_ts_result kvi_tt_make_certs(const char *dir)
{
    char *prog = kvi_ts_find_program("openssl");
    if (prog == NULL)
        return kvi_ts_missing("openssl", "openssl");
    free(prog);
    size_t n = strlen(certs_script) + strlen(dir) + 64;
    char *cmd = malloc(n);
    if (cmd == NULL)
        return KVI_TS_FAILED;
    /* The directory comes from kvi_ts_make_tempdir: no quotes in it. */
    snprintf(cmd, n, "sh -c '%s' sh '%s' >/dev/null 2>&1", "eval \"$KVI_TT_SCRIPT\"", dir);
    setenv("KVI_TT_SCRIPT", certs_script, 1);
    int rc = system(cmd);
    unsetenv("KVI_TT_SCRIPT");
    free(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "kvi_tt_make_certs: openssl failed in %s (status %d)\n", dir, rc);
        return KVI_TS_FAILED;
    }
    return KVI_TS_OK;
}

/* See testtls.h. */
kvi_ts_result kvi_tt_redis_start(kvi_ts_server **out, const char *certdir, const char *cert,
                                 int auth_clients, const char *const *extra, uint16_t *tls_port)
{
    char port[8], certfile[4096], keyfile[4096], cafile[4096];
    const char *args[32];
    size_t n = 0;

    if (kvi_ts_free_port(tls_port) != KVI_TS_OK)
        return KVI_TS_FAILED;
    snprintf(port, sizeof port, "%u", (unsigned)*tls_port);
    snprintf(certfile, sizeof certfile, "%s/%s.pem", certdir, cert);
    snprintf(keyfile, sizeof keyfile, "%s/%s.key", certdir, cert);
    snprintf(cafile, sizeof cafile, "%s/ca.pem", certdir);
    args[n++] = "--tls-port";
    args[n++] = port;
    args[n++] = "--tls-cert-file";
    args[n++] = certfile;
    args[n++] = "--tls-key-file";
    args[n++] = keyfile;
    args[n++] = "--tls-ca-cert-file";
    args[n++] = cafile;
    args[n++] = "--tls-auth-clients";
    args[n++] = auth_clients ? "yes" : "no";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n + 1 < sizeof args / sizeof args[0];
         i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return kvi_ts_redis_start(out, args);
}
