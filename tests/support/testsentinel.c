/*
 * testsentinel.c -- master, replicas and sentinels for the tests (see
 * testsentinel.h).  No hiredis: readiness is read with inline commands on
 * a plain socket.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testsentinel.h"
#include "testtls.h"

#define MAX_NODES 16

struct kvi_tsn_setup {
    char name[64];
    kvi_ts_server *data[MAX_NODES];
    size_t ndata;
    kvi_ts_server *sentinels[MAX_NODES];
    size_t nsentinels;
    int tls;
    uint16_t data_tls[MAX_NODES], sentinel_tls[MAX_NODES];
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends the inline command cmd to 127.0.0.1:port and reads what comes
 * back within 1 s into buf (NUL-terminated).  0 when something came. */
static int query(uint16_t port, const char *cmd, char *buf, size_t buflen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd) && write(fd, "\r\n", 2) == 2) {
        long long end = now_ms() + 1000;
        while (got + 1 < buflen) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            long long left = end - now_ms();
            if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                break;
            ssize_t n = read(fd, buf + got, buflen - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            /* A bulk reply is complete once its announced length is in;
             * anything else (AUTH's +OK, then an array) once the server
             * has been silent for 100 ms. */
            buf[got] = '\0';
            char *nl = strstr(buf, "\r\n");
            if (buf[0] == '$' && nl != NULL &&
                (size_t)(nl - buf) + 2 + (size_t)atol(buf + 1) + 2 <= got)
                break;
            if (end - now_ms() > 100)
                end = now_ms() + 100;
        }
    }
    close(fd);
    buf[got] = '\0';
    return got > 0 ? 0 : -1;
}

/* Polls until cmd on port answers with text containing want. */
/* The AUTH prefix of the sentinels' commands ("" when none). */
static _Thread_local char auth_prefix[160];

static int wait_for(uint16_t port, const char *cmd, const char *want, unsigned timeout_ms)
{
    char buf[8192], full[512];
    long long end = now_ms() + timeout_ms;
    snprintf(full, sizeof full, "%s%s", auth_prefix, cmd);
    do {
        if (query(port, full, buf, sizeof buf) == 0 && strstr(buf, want) != NULL)
            return 0;
        usleep(50 * 1000);
    } while (now_ms() < end);
    return -1;
}

static kvi_ts_result start_sentinel(kvi_tsn_setup *s, const kvi_tsn_spec *spec,
                                    uint16_t master_port, kvi_ts_server **out)
{
    char *dir = NULL, conf[4096], portstr[8];
    uint16_t port, tls_port = 0;
    if (kvi_ts_free_port(&port) != KVI_TS_OK || kvi_ts_make_tempdir("sentinel", &dir) != KVI_TS_OK)
        return KVI_TS_FAILED;
    if (spec->tls_dir != NULL && kvi_ts_free_port(&tls_port) != KVI_TS_OK) {
        kvi_ts_remove_tree(dir);
        free(dir);
        return KVI_TS_FAILED;
    }
    s->sentinel_tls[s->nsentinels] = tls_port;
    snprintf(conf, sizeof conf, "%s/sentinel.conf", dir);
    FILE *fp = fopen(conf, "w");
    if (fp == NULL) {
        kvi_ts_remove_tree(dir);
        free(dir);
        return KVI_TS_FAILED;
    }
    unsigned n = spec->sentinels ? spec->sentinels : 3;
    /* (before the monitor line, which needs them for a name) */
    if (spec->monitor_host != NULL)
        fprintf(fp, "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n");
    fprintf(fp,
            "port %u\nbind 127.0.0.1\ndir %s\n"
            "sentinel monitor %s %s %u %u\n"
            "sentinel down-after-milliseconds %s %u\n"
            "sentinel failover-timeout %s %u\n"
            "sentinel parallel-syncs %s 1\n",
            (unsigned)port, dir, s->name, spec->monitor_host ? spec->monitor_host : "127.0.0.1",
            (unsigned)master_port,
            spec->quorum ? spec->quorum : n / 2 + 1, s->name,
            spec->down_after_ms ? spec->down_after_ms : 1000, s->name,
            spec->failover_timeout_ms ? spec->failover_timeout_ms : 5000, s->name);
    if (spec->sentinel_password != NULL)
        fprintf(fp, "requirepass %s\nsentinel sentinel-pass %s\n", spec->sentinel_password,
                spec->sentinel_password);
    if (spec->tls_dir != NULL)
        fprintf(fp,
                "tls-port %u\ntls-cert-file %s/server.pem\ntls-key-file %s/server.key\n"
                "tls-ca-cert-file %s/ca.pem\ntls-replication yes\ntls-auth-clients no\n",
                (unsigned)tls_port, spec->tls_dir, spec->tls_dir, spec->tls_dir);
    fclose(fp);
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    const char *argv[] = {"redis-server", conf, "--sentinel", NULL};
    char label[32];
    snprintf(label, sizeof label, "sentinel-%zu", s->nsentinels + 1);
    kvi_ts_spec ts = {.name = label,
                      .argv = argv,
                      .port = port,
                      .dir = dir,
                      .own_dir = 1,
                      .probe = kvi_ts_probe_redis};
    kvi_ts_result r = kvi_ts_start(&ts, out);
    if (r != KVI_TS_OK)
        kvi_ts_remove_tree(dir);
    free(dir);
    return r;
}

/* See testsentinel.h. */
kvi_ts_result kvi_tsn_start(const kvi_tsn_spec *spec, kvi_tsn_setup **out)
{
    kvi_tsn_setup *s = calloc(1, sizeof *s);
    if (s == NULL)
        return KVI_TS_FAILED;
    snprintf(s->name, sizeof s->name, "%s", spec->name ? spec->name : "mymaster");
    unsigned nsent = spec->sentinels ? spec->sentinels : 3;
    if (spec->replicas + 1 > MAX_NODES || nsent > MAX_NODES) {
        free(s);
        return KVI_TS_FAILED;
    }
    s->tls = spec->tls_dir != NULL;
    const char *tls_extra[] = {"--tls-replication", "yes", NULL};
    kvi_ts_result r = s->tls ? kvi_tt_redis_start(&s->data[0], spec->tls_dir, "server", 0,
                                                  tls_extra, &s->data_tls[0])
                             : kvi_ts_redis_start(&s->data[0], NULL);
    if (r != KVI_TS_OK) {
        free(s);
        return r;
    }
    s->ndata = 1;
    uint16_t mport = kvi_ts_port(s->data[0]);
    /* Replicas and sentinels reach the master where clients do. */
    uint16_t mport_seen = s->tls ? s->data_tls[0] : mport;
    char mportstr[8];
    snprintf(mportstr, sizeof mportstr, "%u", (unsigned)mport_seen);
    for (unsigned i = 0; i < spec->replicas && r == KVI_TS_OK; i++) {
        const char *extra[] = {"--replicaof",       "127.0.0.1", mportstr,
                               "--tls-replication", "yes",       NULL};
        if (s->tls) {
            r = kvi_tt_redis_start(&s->data[s->ndata], spec->tls_dir, "server", 0, extra,
                                   &s->data_tls[s->ndata]);
        } else {
            extra[3] = NULL;
            r = kvi_ts_redis_start(&s->data[s->ndata], extra);
        }
        if (r == KVI_TS_OK)
            s->ndata++;
    }
    char want[64];
    snprintf(want, sizeof want, "connected_slaves:%u", spec->replicas);
    if (r == KVI_TS_OK && wait_for(mport, "INFO replication", want, 15000) != 0) {
        fprintf(stderr, "kvi_tsn_start: replicas not connected in time\n");
        r = KVI_TS_FAILED;
    }
    for (size_t i = 1; i < s->ndata && r == KVI_TS_OK; i++)
        if (wait_for(kvi_ts_port(s->data[i]), "INFO replication", "master_link_status:up", 15000) !=
            0)
            r = KVI_TS_FAILED;
    for (unsigned i = 0; i < nsent && r == KVI_TS_OK; i++) {
        r = start_sentinel(s, spec, mport_seen, &s->sentinels[s->nsentinels]);
        if (r == KVI_TS_OK)
            s->nsentinels++;
    }
    /* Every sentinel knows the master, the replicas and the other
     * sentinels (a failover needs all three). */
    char cmd[128], want_r[64], want_s[64];
    snprintf(cmd, sizeof cmd, "SENTINEL MASTER %s", s->name);
    auth_prefix[0] = '\0';
    if (spec->sentinel_password != NULL)
        snprintf(auth_prefix, sizeof auth_prefix, "AUTH %s\r\n", spec->sentinel_password);
    snprintf(want_r, sizeof want_r, "num-slaves\r\n$%zu\r\n%u\r\n",
             (size_t)snprintf(NULL, 0, "%u", spec->replicas), spec->replicas);
    snprintf(want_s, sizeof want_s, "num-other-sentinels\r\n$%zu\r\n%u\r\n",
             (size_t)snprintf(NULL, 0, "%u", nsent - 1), nsent - 1);
    for (size_t i = 0; i < s->nsentinels && r == KVI_TS_OK; i++) {
        uint16_t p = kvi_ts_port(s->sentinels[i]);
        if (wait_for(p, cmd, want_r, 20000) != 0 || wait_for(p, cmd, want_s, 20000) != 0) {
            fprintf(stderr, "kvi_tsn_start: sentinel %zu does not know the set-up in time\n", i);
            r = KVI_TS_FAILED;
        }
    }
    auth_prefix[0] = '\0';
    if (r != KVI_TS_OK) {
        kvi_tsn_free(s);
        return r;
    }
    *out = s;
    return KVI_TS_OK;
}

/* See testsentinel.h. */
kvi_ts_server *kvi_tsn_data(kvi_tsn_setup *s, size_t i)
{
    return i < s->ndata ? s->data[i] : NULL;
}

size_t kvi_tsn_ndata(const kvi_tsn_setup *s)
{
    return s->ndata;
}

kvi_ts_server *kvi_tsn_sentinel(kvi_tsn_setup *s, size_t i)
{
    return i < s->nsentinels ? s->sentinels[i] : NULL;
}

uint16_t kvi_tsn_data_tls_port(const kvi_tsn_setup *s, size_t i)
{
    return s->tls && i < s->ndata ? s->data_tls[i] : 0;
}

size_t kvi_tsn_nsentinels(const kvi_tsn_setup *s)
{
    return s->nsentinels;
}

/* See testsentinel.h. */
size_t kvi_tsn_url(const kvi_tsn_setup *s, const char *scheme_group, char *buf, size_t buflen)
{
    size_t n = (size_t)snprintf(buf, buflen, "%s://", scheme_group);
    for (size_t i = 0; i < s->nsentinels; i++)
        n += (size_t)snprintf(
            n < buflen ? buf + n : NULL, n < buflen ? buflen - n : 0, "%s127.0.0.1:%u",
            i ? "," : "", (unsigned)(s->tls ? s->sentinel_tls[i] : kvi_ts_port(s->sentinels[i])));
    n += (size_t)snprintf(n < buflen ? buf + n : NULL, n < buflen ? buflen - n : 0, "/?sentinel=%s",
                          s->name);
    return n;
}

/* See testsentinel.h. */
int kvi_tsn_query(uint16_t port, const char *cmd, char *buf, size_t buflen)
{
    return query(port, cmd, buf, buflen);
}

/* See testsentinel.h. */
void kvi_tsn_free(kvi_tsn_setup *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nsentinels; i++)
        kvi_ts_free(s->sentinels[i]);
    for (size_t i = 0; i < s->ndata; i++)
        kvi_ts_free(s->data[i]);
    free(s);
}
