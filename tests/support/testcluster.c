/*
 * testcluster.c -- a throwaway Redis Cluster for tests (see testcluster.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testcluster.h"

#include "testclock.h"

#define CLI_TIMEOUT_MS 15000
#define CREATE_TIMEOUT_MS 60000

struct kvi_tc_cluster {
    size_t n;
    kvi_ts_server **nodes;
    uint16_t *ports;
    uint16_t *tls_ports; /* NULL without TLS */
    char *password;
    char *cli;
};

static _Thread_local char tc_msg[1024];

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static kvi_ts_result
fail(kvi_ts_result r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tc_msg, sizeof tc_msg, fmt, ap);
    va_end(ap);
    return r;
}

const char *kvi_tc_errmsg(void)
{
    return tc_msg[0] != '\0' ? tc_msg : kvi_ts_errmsg();
}

/* Runs argv (argv[0] a path), collecting stdout+stderr; kills it after
 * timeout_ms.  *status is the exit status (-1 when killed). */
static kvi_ts_result run(const char *const *argv, unsigned timeout_ms, char **out, int *status)
{
    int fds[2];
    if (pipe(fds) != 0)
        return fail(KVI_TS_FAILED, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return fail(KVI_TS_FAILED, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    uint64_t deadline = ((uint64_t)kvi_test_mono_ms()) + timeout_ms;
    int killed = 0;
    for (;;) {
        uint64_t now = ((uint64_t)kvi_test_mono_ms());
        if (now >= deadline) {
            kill(pid, SIGKILL);
            killed = 1;
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        if (buf != NULL && len + 1024 > cap) {
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
            } else {
                buf = grown;
                cap *= 2;
            }
        }
        char scratch[1024];
        char *dst = buf != NULL ? buf + len : scratch;
        size_t room = buf != NULL ? cap - len - 1 : sizeof scratch;
        ssize_t got = read(fds[0], dst, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (buf != NULL)
            len += (size_t)got;
    }
    close(fds[0]);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
        ;
    if (buf == NULL)
        return fail(KVI_TS_FAILED, "out of memory");
    buf[len] = '\0';
    *status = killed ? -1 : (WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
    if (out != NULL)
        *out = buf;
    else
        free(buf);
    return killed ? fail(KVI_TS_FAILED, "%s timed out after %u ms", argv[0], timeout_ms)
                  : KVI_TS_OK;
}

kvi_ts_result kvi_tc_cli(const kvi_tc_cluster *cl, size_t i, char **out, const char *const *args)
{
    const char *argv[64];
    char port[8];
    size_t n = 0;

    if (out != NULL)
        *out = NULL;
    if (cl == NULL || i >= cl->n)
        return fail(KVI_TS_FAILED, "kvi_tc_cli: no node %zu", i);
    snprintf(port, sizeof port, "%u", (unsigned)cl->ports[i]);
    argv[n++] = cl->cli;
    argv[n++] = "-h";
    argv[n++] = "127.0.0.1";
    argv[n++] = "-p";
    argv[n++] = port;
    if (cl->password != NULL) {
        argv[n++] = "--no-auth-warning";
        argv[n++] = "-a";
        argv[n++] = cl->password;
    }
    for (size_t j = 0; args[j] != NULL; j++) {
        if (n + 2 >= sizeof argv / sizeof argv[0])
            return fail(KVI_TS_FAILED, "kvi_tc_cli: too many arguments");
        argv[n++] = args[j];
    }
    argv[n] = NULL;
    char *text = NULL;
    int status = 0;
    kvi_ts_result r = run(argv, CLI_TIMEOUT_MS, &text, &status);
    if (r != KVI_TS_OK)
        return r;
    if (status != 0) {
        r = fail(KVI_TS_FAILED, "redis-cli %s on port %u exited %d: %.300s", args[0], cl->ports[i],
                 status, text);
        free(text);
        return r;
    }
    if (out != NULL)
        *out = text;
    else
        free(text);
    return KVI_TS_OK;
}

size_t kvi_tc_size(const kvi_tc_cluster *cl)
{
    return cl != NULL ? cl->n : 0;
}

kvi_ts_server *kvi_tc_server(kvi_tc_cluster *cl, size_t i)
{
    return cl != NULL && i < cl->n ? cl->nodes[i] : NULL;
}

uint16_t kvi_tc_port(const kvi_tc_cluster *cl, size_t i)
{
    return cl != NULL && i < cl->n ? cl->ports[i] : 0;
}

uint16_t kvi_tc_tls_port(const kvi_tc_cluster *cl, size_t i)
{
    return cl != NULL && cl->tls_ports != NULL && i < cl->n ? cl->tls_ports[i] : 0;
}

size_t kvi_tc_url(const kvi_tc_cluster *cl, const char *scheme_group, char *buf, size_t buflen)
{
    size_t need = 0;
    char scratch[1];
    if (buf == NULL || buflen == 0) {
        buf = scratch;
        buflen = 1;
    }
#define TC_APPEND(...)                                                                             \
    do {                                                                                           \
        int k_ = snprintf(buf + (need < buflen ? need : buflen - 1),                               \
                          need < buflen ? buflen - need : 1, __VA_ARGS__);                         \
        if (k_ > 0)                                                                                \
            need += (size_t)k_;                                                                    \
    } while (0)
    TC_APPEND("%s://", scheme_group);
    if (cl->password != NULL)
        TC_APPEND(":%s@", cl->password);
    for (size_t i = 0; i < cl->n; i++)
        TC_APPEND("%s127.0.0.1:%u", i ? "," : "", (unsigned)cl->ports[i]);
    TC_APPEND("/");
#undef TC_APPEND
    return need;
}

/* Fills a[0..n) with n distinct free ports, also distinct from avoid[]. */
static kvi_ts_result pick_ports(uint16_t *a, size_t n, const uint16_t *avoid, size_t navoid)
{
    for (size_t i = 0; i < n; i++) {
        for (int tries = 0;; tries++) {
            uint16_t p;
            if (kvi_ts_free_port(&p) != KVI_TS_OK || tries > 100)
                return fail(KVI_TS_FAILED, "no free port");
            int dup = 0;
            for (size_t j = 0; j < i; j++)
                dup |= a[j] == p;
            for (size_t j = 0; j < navoid; j++)
                dup |= avoid[j] == p;
            if (!dup) {
                a[i] = p;
                break;
            }
        }
    }
    return KVI_TS_OK;
}

/* Splits line in place at blanks into at most max tokens. */
static size_t split(char *line, char **toks, size_t max)
{
    size_t k = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " ", &save); tok != NULL && k < max;
         tok = strtok_r(NULL, " ", &save))
        toks[k++] = tok;
    return k;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The masters-with-slots view of one node, as a canonical string:
 * sorted lines "ip:port slot-ranges". */
static char *slot_view(const char *nodes_text)
{
    char *copy = strdup(nodes_text);
    char *lines[512];
    size_t n = 0, total = 1;
    if (copy == NULL)
        return NULL;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line != NULL && n < 512;
         line = strtok_r(NULL, "\n", &save)) {
        /* id addr flags master ping pong epoch link slot... */
        char *f[600];
        size_t k = split(line, f, 600);
        if (k < 8 || strstr(f[2], "master") == NULL || strstr(f[2], "fail") != NULL)
            continue;
        char *at = strchr(f[1], '@');
        if (at != NULL)
            *at = '\0';
        char entry[4096];
        size_t e = (size_t)snprintf(entry, sizeof entry, "%s", f[1]);
        int any = 0;
        for (size_t j = 8; j < k; j++) {
            if (f[j][0] == '[')
                continue;
            any = 1;
            if (e < sizeof entry)
                e += (size_t)snprintf(entry + e, sizeof entry - e, " %s", f[j]);
        }
        if (!any)
            continue;
        lines[n] = strdup(entry);
        if (lines[n] == NULL)
            break;
        total += strlen(lines[n]) + 1;
        n++;
    }
    free(copy);
    qsort(lines, n, sizeof lines[0], cmp_str);
    char *view = malloc(total);
    if (view != NULL) {
        view[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            strcat(view, lines[i]);
            strcat(view, "\n");
        }
    }
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    return view;
}

kvi_ts_result kvi_tc_wait_ok(kvi_tc_cluster *cl, unsigned timeout_ms)
{
    uint64_t deadline = ((uint64_t)kvi_test_mono_ms()) + timeout_ms;
    char why[512] = "no node running";

    for (;;) {
        int ok = 1, seen = 0;
        char *first_view = NULL;
        for (size_t i = 0; i < cl->n && ok; i++) {
            if (!kvi_ts_running(cl->nodes[i]))
                continue;
            char *info = NULL, *nodes = NULL;
            const char *a_info[] = {"CLUSTER", "INFO", NULL};
            const char *a_nodes[] = {"CLUSTER", "NODES", NULL};
            if (kvi_tc_cli(cl, i, &info, a_info) != KVI_TS_OK ||
                kvi_tc_cli(cl, i, &nodes, a_nodes) != KVI_TS_OK) {
                snprintf(why, sizeof why, "%.400s", kvi_tc_errmsg());
                ok = 0;
            } else if (strstr(info, "cluster_state:ok") == NULL ||
                       strstr(info, "cluster_slots_assigned:16384") == NULL) {
                snprintf(why, sizeof why, "node %zu (port %u): %.200s", i, cl->ports[i], info);
                ok = 0;
            } else {
                char *view = slot_view(nodes);
                seen++;
                if (view == NULL) {
                    ok = 0;
                } else if (first_view == NULL) {
                    first_view = view;
                    view = NULL;
                } else if (strcmp(first_view, view) != 0) {
                    snprintf(why, sizeof why, "nodes disagree on the slot map");
                    ok = 0;
                }
                free(view);
            }
            free(info);
            free(nodes);
        }
        free(first_view);
        if (ok && seen > 0) {
            tc_msg[0] = '\0';
            return KVI_TS_OK;
        }
        if (((uint64_t)kvi_test_mono_ms()) >= deadline)
            return fail(KVI_TS_FAILED, "cluster not ok after %u ms: %s", timeout_ms, why);
        kvi_test_sleep_ms(200);
    }
}

kvi_ts_result kvi_tc_node_id(const kvi_tc_cluster *cl, size_t i, char *id)
{
    const char *args[] = {"CLUSTER", "MYID", NULL};
    char *text = NULL;
    kvi_ts_result r = kvi_tc_cli(cl, i, &text, args);
    if (r != KVI_TS_OK)
        return r;
    size_t len = strcspn(text, "\r\n");
    if (len != 40) {
        r = fail(KVI_TS_FAILED, "CLUSTER MYID: unexpected \"%.60s\"", text);
        free(text);
        return r;
    }
    memcpy(id, text, 40);
    id[40] = '\0';
    free(text);
    return KVI_TS_OK;
}

kvi_ts_result kvi_tc_master_of(const kvi_tc_cluster *cl, size_t ask, unsigned slot, size_t *index)
{
    const char *args[] = {"CLUSTER", "NODES", NULL};
    char *text = NULL;
    kvi_ts_result r = kvi_tc_cli(cl, ask, &text, args);
    if (r != KVI_TS_OK)
        return r;
    r = fail(KVI_TS_FAILED, "no master serves slot %u", slot);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[600];
        size_t k = split(line, f, 600);
        if (k < 8 || strstr(f[2], "master") == NULL)
            continue;
        char *colon = strrchr(f[1], ':');
        unsigned port = colon != NULL ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
        for (size_t j = 8; j < k; j++) {
            const char *tok = f[j];
            if (tok[0] == '[')
                continue;
            char *dash = strchr(tok, '-');
            unsigned lo = (unsigned)strtoul(tok, NULL, 10);
            unsigned hi = dash != NULL ? (unsigned)strtoul(dash + 1, NULL, 10) : lo;
            if (slot < lo || slot > hi)
                continue;
            for (size_t i = 0; i < cl->n; i++) {
                if (cl->ports[i] == port) {
                    *index = i;
                    r = KVI_TS_OK;
                    tc_msg[0] = '\0';
                }
            }
        }
    }
    free(text);
    return r;
}

void kvi_tc_free(kvi_tc_cluster *cl)
{
    if (cl == NULL)
        return;
    for (size_t i = 0; i < cl->n; i++)
        kvi_ts_free(cl->nodes[i]);
    free(cl->nodes);
    free(cl->ports);
    free(cl->tls_ports);
    free(cl->password);
    free(cl->cli);
    free(cl);
}

/* Waits until every master has `replicas` replicas in sync (state=online)
 * and every replica's link is up, so that a test may kill a master right
 * away without losing its data. */
static kvi_ts_result wait_replicas_online(kvi_tc_cluster *cl, unsigned replicas,
                                          unsigned timeout_ms)
{
    uint64_t deadline = ((uint64_t)kvi_test_mono_ms()) + timeout_ms;
    const char *args[] = {"INFO", "replication", NULL};
    for (;;) {
        int ok = 1;
        for (size_t i = 0; i < cl->n && ok; i++) {
            char *out = NULL;
            if (kvi_tc_cli(cl, i, &out, args) != KVI_TS_OK)
                return KVI_TS_FAILED;
            if (strstr(out, "role:master") != NULL) {
                unsigned online = 0;
                for (const char *p = strstr(out, "state=online"); p != NULL;
                     p = strstr(p + 1, "state=online"))
                    online++;
                ok = online >= replicas;
            } else {
                ok = strstr(out, "master_link_status:up") != NULL;
            }
            free(out);
        }
        if (ok)
            return KVI_TS_OK;
        if (((uint64_t)kvi_test_mono_ms()) >= deadline)
            return fail(KVI_TS_FAILED, "replicas not in sync after %u ms", timeout_ms);
        kvi_test_sleep_ms(100);
    }
}

kvi_ts_result kvi_tc_start(const kvi_tc_spec *spec, kvi_tc_cluster **out)
{
    unsigned masters = spec->masters ? spec->masters : 3;
    size_t n = (size_t)masters * (1 + spec->replicas);
    unsigned node_timeout = spec->node_timeout_ms ? spec->node_timeout_ms : 2000;
    kvi_ts_result r;

    *out = NULL;
    tc_msg[0] = '\0';
    char *server = kvi_ts_find_program("redis-server");
    char *cli = kvi_ts_find_program("redis-cli");
    free(server);
    if (server == NULL || cli == NULL) {
        free(cli);
        kvi_ts_result miss = kvi_ts_missing(server == NULL ? "redis-server" : "redis-cli",
                                            server == NULL ? "redis-server" : "redis-tools");
        return fail(miss, "%s", kvi_ts_errmsg());
    }
    kvi_tc_cluster *cl = calloc(1, sizeof *cl);
    uint16_t *bus = calloc(n, sizeof *bus);
    if (cl == NULL || bus == NULL || (cl->nodes = calloc(n, sizeof *cl->nodes)) == NULL ||
        (cl->ports = calloc(n, sizeof *cl->ports)) == NULL ||
        (spec->password != NULL && (cl->password = strdup(spec->password)) == NULL)) {
        free(cli);
        free(bus);
        kvi_tc_free(cl);
        return fail(KVI_TS_FAILED, "out of memory");
    }
    cl->cli = cli;
    if ((r = pick_ports(cl->ports, n, NULL, 0)) != KVI_TS_OK ||
        (r = pick_ports(bus, n, cl->ports, n)) != KVI_TS_OK)
        goto failed;
    if (spec->tls_dir != NULL) {
        /* Distinct from the client and bus ports picked above. */
        uint16_t *avoid = calloc(2 * n, sizeof *avoid);
        if (avoid == NULL || (cl->tls_ports = calloc(n, sizeof *cl->tls_ports)) == NULL) {
            free(avoid);
            r = fail(KVI_TS_FAILED, "out of memory");
            goto failed;
        }
        memcpy(avoid, cl->ports, n * sizeof *avoid);
        memcpy(avoid + n, bus, n * sizeof *avoid);
        r = pick_ports(cl->tls_ports, n, avoid, 2 * n);
        free(avoid);
        if (r != KVI_TS_OK)
            goto failed;
    }
    for (size_t i = 0; i < n; i++) {
        char port[8], busport[8], timeout[16], name[48], tlsport[8];
        char certfile[4096], keyfile[4096], cafile[4096];
        const char *argv[64];
        size_t k = 0;
        snprintf(port, sizeof port, "%u", (unsigned)cl->ports[i]);
        snprintf(busport, sizeof busport, "%u", (unsigned)bus[i]);
        snprintf(timeout, sizeof timeout, "%u", node_timeout);
        snprintf(name, sizeof name, "redis-cluster-%zu", i);
        const char *base[] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--cluster-enabled", "yes",
                              "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
                              timeout, "--cluster-port", busport,
                              /* A replica may always take over, however long
                               * ago it last heard from its master. */
                              "--cluster-replica-validity-factor", "0",
                              /* First sync of a replica at once, not after
                               * the default 5 s. */
                              "--repl-diskless-sync-delay", "0", NULL};
        for (size_t j = 0; base[j] != NULL; j++)
            argv[k++] = base[j];
        if (spec->password != NULL) {
            argv[k++] = "--requirepass";
            argv[k++] = spec->password;
            argv[k++] = "--masterauth";
            argv[k++] = spec->password;
        }
        if (spec->tls_dir != NULL) {
            snprintf(tlsport, sizeof tlsport, "%u", (unsigned)cl->tls_ports[i]);
            snprintf(certfile, sizeof certfile, "%s/server.pem", spec->tls_dir);
            snprintf(keyfile, sizeof keyfile, "%s/server.key", spec->tls_dir);
            snprintf(cafile, sizeof cafile, "%s/ca.pem", spec->tls_dir);
            const char *tls[] = {"--tls-port", tlsport, "--tls-cluster", "yes",
                                 "--tls-replication", "yes", "--tls-cert-file", certfile,
                                 "--tls-key-file", keyfile, "--tls-ca-cert-file", cafile,
                                 "--tls-auth-clients", "no", NULL};
            for (size_t j = 0; tls[j] != NULL; j++)
                argv[k++] = tls[j];
        }
        for (size_t j = 0; spec->extra != NULL && spec->extra[j] != NULL && k < 63; j++)
            argv[k++] = spec->extra[j];
        argv[k] = NULL;
        kvi_ts_spec ts = {.name = name,
                          .argv = argv,
                          .port = cl->ports[i],
                          .dir = NULL,
                          .own_dir = 1,
                          .ready_timeout_ms = 10000,
                          .probe = kvi_ts_probe_redis};
        r = kvi_ts_start(&ts, &cl->nodes[i]);
        if (r != KVI_TS_OK) {
            fail(r, "node %zu: %s", i, kvi_ts_errmsg());
            goto failed;
        }
        cl->n = i + 1;
    }
    {
        const char *argv[80];
        char addr[64][24];
        char reps[8];
        size_t k = 0;
        argv[k++] = cl->cli;
        argv[k++] = "--cluster";
        argv[k++] = "create";
        for (size_t i = 0; i < n && i < 64; i++) {
            snprintf(addr[i], sizeof addr[i], "127.0.0.1:%u", (unsigned)cl->ports[i]);
            argv[k++] = addr[i];
        }
        snprintf(reps, sizeof reps, "%u", spec->replicas);
        argv[k++] = "--cluster-replicas";
        argv[k++] = reps;
        argv[k++] = "--cluster-yes";
        if (spec->password != NULL) {
            argv[k++] = "--no-auth-warning";
            argv[k++] = "-a";
            argv[k++] = spec->password;
        }
        argv[k] = NULL;
        char *text = NULL;
        int status = 0;
        r = run(argv, CREATE_TIMEOUT_MS, &text, &status);
        if (r == KVI_TS_OK && status != 0)
            r = fail(KVI_TS_FAILED, "redis-cli --cluster create exited %d: %.400s", status,
                     text != NULL ? text : "");
        free(text);
        if (r != KVI_TS_OK)
            goto failed;
    }
    unsigned ready_ms = spec->ready_timeout_ms ? spec->ready_timeout_ms : 30000;
    r = kvi_tc_wait_ok(cl, ready_ms);
    if (r == KVI_TS_OK && spec->replicas > 0)
        r = wait_replicas_online(cl, spec->replicas, ready_ms);
    if (r != KVI_TS_OK)
        goto failed;
    free(bus);
    *out = cl;
    return KVI_TS_OK;

failed:
    free(bus);
    kvi_tc_free(cl);
    return r;
}
