/*
 * rel_hostile.c -- the redis and memcached engines against fake servers
 * that misbehave (hostile.h): garbage, an absurd length ($999999999999 /
 * a 4 GiB memcached body) then silence or an endless stream, half a reply
 * then silence, one byte per second, no answer at all, a closed
 * connection.
 *
 *   rel_hostile redis|memcached
 *
 * Every mode runs in its own thread with its own server and context.
 * Every call (the open without lazy, then store, fetch, add, remove, ping
 * and for redis a raw query; for memcached a batch and a non-blocking batch
 * of a store, a fetch and an add on its own connections) must end with
 * KVI_E_PROTOCOL, KVI_E_TIMEOUT,
 * KVI_E_CONNECT or KVI_E_IO within the configured timeout (plus a small
 * margin), with a detail message; the process's resident memory must stay
 * bounded; nothing may crash.  Prints "RESULT hostile ..." lines.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testclock.h"
#include "hostile.h"
#include "rel_util.h"

#define TIMEOUT_MS 1500
#define MARGIN_MS (rel_asan() ? 1500 : 700)
/* Resident memory the whole run may add (the absurd lengths must not be
 * believed, the streams must not be buffered without limit). */
#define RSS_LIMIT_KIB (rel_asan() ? 256u * 1024u : 64u * 1024u)

enum op { OP_OPEN, OP_STORE, OP_FETCH, OP_ADD, OP_REMOVE, OP_PING, OP_RAW, OP_BATCH, OP_ASYNC, OP_N };
static const char *const op_names[OP_N] = {"open", "store", "fetch", "add",  "remove",
                                           "ping", "raw",   "batch", "non-blocking batch"};

struct job {
    rel_proto proto;
    rel_hostile_mode mode;
    int failed;
    int64_t max_ms;
    char why[512];
    char summary[256];
};

static int allowed(kvi_status st)
{
    return st == KVI_E_PROTOCOL || st == KVI_E_TIMEOUT || st == KVI_E_CONNECT || st == KVI_E_IO;
}

static kvi_status run_op(kvi *k, const char *id, enum op op)
{
    kvi_value v = KVI_VALUE_INIT;
    kvi_reply *r = NULL;
    int64_t n = 0;
    kvi_status st;
    switch (op) {
    case OP_STORE:
        return kvi_store(k, id, "key", 3, "value", 5, 0);
    case OP_FETCH:
        st = kvi_fetch(k, id, "key", 3, &v);
        kvi_value_free(&v);
        return st;
    case OP_ADD:
        return kvi_add(k, id, "ctr", 3, 5, 0, &n);
    case OP_REMOVE:
        return kvi_remove(k, id, "key", 3);
    case OP_PING:
        return kvi_ping(k, id);
    case OP_RAW:
        st = kvi_raw_query(k, id, "GET key", 7, &r);
        kvi_reply_free(r);
        return st;
    case OP_BATCH:
    case OP_ASYNC: {
        /* A store, a fetch and an add: memcached runs them on its own
         * connections and reply parser (mc_pipe.c); no deadline for the
         * blocking run (the connection's timeout must end it), one for the
         * non-blocking run (it has no other). */
        kvi_batch *b = NULL;
        if (kvi_batch_new(k, &b) != KVI_OK)
            return KVI_E_NOMEM;
        (void)kvi_batch_store(b, id, "key", 3, "value", 5, 0);
        (void)kvi_batch_fetch(b, id, "key", 3);
        (void)kvi_batch_add(b, id, "ctr", 3, 5, 0);
        if (op == OP_BATCH) {
            st = kvi_batch_run(b, 0);
        } else {
            kvi_wait w;
            int rr = kvi_batch_start(b, TIMEOUT_MS, NULL, NULL, &w);
            while (rr == 0) {
                struct pollfd p = {w.fd, (short)((w.events & KVI_WAIT_READ ? POLLIN : 0) |
                                                 (w.events & KVI_WAIT_WRITE ? POLLOUT : 0)),
                                   0};
                int64_t left = w.deadline_ms - kvi_test_mono_ms();
                (void)poll(&p, 1, left > 0 ? (int)left : 0);
                rr = kvi_batch_resume(b, &w);
            }
            st = KVI_OK;
            for (size_t i = 0; i < kvi_batch_count(b) && st == KVI_OK; i++)
                if (KVI_STATUS_IS_ERROR(kvi_batch_status(b, i)))
                    st = kvi_batch_status(b, i);
        }
        /* Every op failed with its own message: the first one's is the call's. */
        for (size_t i = 0; i < kvi_batch_count(b); i++)
            if (!KVI_STATUS_IS_ERROR(kvi_batch_status(b, i)) || kvi_batch_errmsg(b, i)[0] == '\0')
                st = KVI_E_INTERNAL;
        kvi_batch_free(b);
        return st;
    }
    default:
        return KVI_E_INTERNAL;
    }
}

/* Checks one finished call; records the first problem. */
static void check(struct job *j, kvi *k, enum op op, kvi_status st, int64_t took)
{
    if (took > j->max_ms)
        j->max_ms = took;
    if (j->failed)
        return;
    const char *msg = kvi_errmsg(k);
    if (!allowed(st))
        snprintf(j->why, sizeof j->why, "%s gave %s (%s)", op_names[op], kvi_status_name(st), msg);
    else if (took > TIMEOUT_MS + MARGIN_MS)
        snprintf(j->why, sizeof j->why, "%s took %" PRId64 " ms (timeout %d ms), %s: %s",
                 op_names[op], took, TIMEOUT_MS, kvi_status_name(st), msg);
    else if (msg[0] == '\0')
        snprintf(j->why, sizeof j->why, "%s gave %s without a detail message", op_names[op],
                 kvi_status_name(st));
    else
        return;
    j->failed = 1;
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    rel_hostile *h = NULL;
    if (rel_hostile_start(&h, j->proto, j->mode) != 0) {
        snprintf(j->why, sizeof j->why, "cannot start the fake server");
        j->failed = 1;
        return NULL;
    }
    const char *scheme = j->proto == REL_PROTO_REDIS ? "redis" : "memcached";
    char url[256], id[64];
    snprintf(id, sizeof id, "%s:h", scheme);
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        rel_fail("kvi_new");

    /* The open (no lazy) talks to the server at once. */
    snprintf(url, sizeof url, "%s://127.0.0.1:%u/?timeout=%d&connect_timeout=%d", id,
             rel_hostile_port(h), TIMEOUT_MS, TIMEOUT_MS);
    int64_t t0 = kvi_test_mono_ms();
    kvi_status st = kvi_add_url(k, url);
    int64_t took = kvi_test_mono_ms() - t0;
    if (st == KVI_E_MODULE_MISSING)
        rel_skip("engine module not built");
    check(j, k, OP_OPEN, st, took);
    if (st == KVI_OK) {
        /* Defined after all (e.g. an engine that opens lazily): use it. */
    } else {
        snprintf(url, sizeof url, "%s://127.0.0.1:%u/?timeout=%d&connect_timeout=%d&lazy=1", id,
                 rel_hostile_port(h), TIMEOUT_MS, TIMEOUT_MS);
        st = kvi_add_url(k, url);
        if (st != KVI_OK) {
            snprintf(j->why, sizeof j->why, "lazy open: %s: %s", kvi_status_name(st),
                     kvi_errmsg(k));
            j->failed = 1;
        }
    }
    unsigned calls = 1;
    if (st == KVI_OK) {
        for (int round = 0; round < 2; round++) {
            /* The batches first: a known bug of a single call (docs/
             * reliability.md) ends the mode's run before the ops after it. */
            static const enum op order[] = {OP_BATCH, OP_ASYNC, OP_STORE, OP_FETCH,
                                            OP_ADD,   OP_REMOVE, OP_PING, OP_RAW};
            for (size_t oi = 0; oi < sizeof order / sizeof order[0]; oi++) {
                enum op op = order[oi];
                if (op == OP_RAW && j->proto != REL_PROTO_REDIS)
                    continue;
                if ((op == OP_BATCH || op == OP_ASYNC) && j->proto != REL_PROTO_MEMCACHED)
                    continue; /* the redis batches are tested elsewhere */
                t0 = kvi_test_mono_ms();
                st = run_op(k, id, (enum op)op);
                took = kvi_test_mono_ms() - t0;
                check(j, k, (enum op)op, st, took);
                calls++;
                if (j->failed)
                    break;
            }
        }
    }
    snprintf(j->summary, sizeof j->summary,
             "%u calls, slowest %" PRId64 " ms, %u connections, %" PRIu64
             " bytes sent by the server",
             calls, j->max_ms, rel_hostile_accepted(h), rel_hostile_sent(h));
    kvi_free(k);
    rel_hostile_stop(h);
    return NULL;
}

/* Child process of one mode: runs the job, samples its own resident
 * memory, prints its RESULT line, exits 0 (contract kept) or 1. */
static int run_child(rel_proto proto, rel_hostile_mode mode, const char *engine)
{
    uint64_t rss0 = rel_rss_kib();
    struct job j;
    memset(&j, 0, sizeof j);
    j.proto = proto;
    j.mode = mode;
    pthread_t tid;
    if (pthread_create(&tid, NULL, job_main, &j) != 0)
        rel_fail("pthread_create");
    uint64_t peak = rss0;
    while (pthread_tryjoin_np(tid, NULL) != 0) {
        uint64_t rss = rel_rss_kib();
        if (rss > peak)
            peak = rss;
        kvi_test_sleep_ms(20);
    }
    int bad_rss = peak > rss0 + RSS_LIMIT_KIB;
    printf("RESULT hostile %s %s: %s: %s; rss +%" PRIu64 " KiB\n", engine,
           rel_hostile_mode_name(mode), j.failed || bad_rss ? "FAIL" : "ok", j.summary,
           peak - rss0);
    if (j.failed)
        printf("  %s %s: %s\n", engine, rel_hostile_mode_name(mode), j.why);
    if (bad_rss)
        printf("  %s %s: resident memory grew by %" PRIu64 " KiB (limit %u KiB)\n", engine,
               rel_hostile_mode_name(mode), peak - rss0, RSS_LIMIT_KIB);
    fflush(stdout);
    return j.failed || bad_rss ? 1 : 0;
}

static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* Longest a mode's child may run: 2 rounds of calls of at most the
 * timeout each, and plenty of slack; a child still running is hung. */
#define CHILD_LIMIT_MS 45000

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *known = NULL;
    if (argc == 4 && strcmp(argv[2], "--known-bugs") == 0)
        known = argv[3];
    if ((argc != 2 && known == NULL) ||
        (strcmp(argv[1], "redis") != 0 && strcmp(argv[1], "memcached") != 0)) {
        fprintf(stderr, "usage: rel_hostile redis|memcached [--known-bugs MODE,...]\n");
        return 2;
    }
    rel_proto proto = strcmp(argv[1], "redis") == 0 ? REL_PROTO_REDIS : REL_PROTO_MEMCACHED;

    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        rel_fail("kvi_new");
    char url[128];
    snprintf(url, sizeof url, "%s://127.0.0.1:1/?lazy=1", argv[1]);
    if (kvi_add_url(k, url) == KVI_E_MODULE_MISSING)
        rel_skip("engine module not built");
    kvi_free(k);

    /* Each mode in its own process: a crash or a hang is reported for its
     * mode and does not hide the others.  REL_MODE=name runs one only. */
    const char *only = getenv("REL_MODE");
    pid_t pids[REL_H_COUNT];
    for (int m = 0; m < REL_H_COUNT; m++) {
        pids[m] = 0;
        if (only != NULL && strcmp(only, rel_hostile_mode_name((rel_hostile_mode)m)) != 0)
            continue;
        pid_t pid = fork();
        if (pid < 0)
            rel_fail("fork");
        if (pid == 0)
            _exit(run_child(proto, (rel_hostile_mode)m, argv[1]));
        pids[m] = pid;
    }
    int status[REL_H_COUNT] = {0};
    int64_t until = kvi_test_mono_ms() + CHILD_LIMIT_MS;
    int hung[REL_H_COUNT] = {0};
    for (;;) {
        int running = 0;
        for (int m = 0; m < REL_H_COUNT; m++) {
            if (pids[m] <= 0)
                continue;
            pid_t r = waitpid(pids[m], &status[m], WNOHANG);
            if (r == pids[m])
                pids[m] = -1;
            else
                running++;
        }
        if (running == 0)
            break;
        if (kvi_test_mono_ms() > until) {
            for (int m = 0; m < REL_H_COUNT; m++) {
                if (pids[m] > 0) {
                    kill(pids[m], SIGKILL);
                    waitpid(pids[m], &status[m], 0);
                    hung[m] = 1;
                    pids[m] = -1;
                }
            }
            break;
        }
        kvi_test_sleep_ms(50);
    }
    int failures = 0, known_seen = 0;
    for (int m = 0; m < REL_H_COUNT; m++) {
        if (pids[m] == 0)
            continue;
        const char *name = rel_hostile_mode_name((rel_hostile_mode)m);
        char what[128];
        int broken = 1;
        if (hung[m])
            snprintf(what, sizeof what, "hung (killed after %d ms)", CHILD_LIMIT_MS);
        else if (WIFSIGNALED(status[m]))
            snprintf(what, sizeof what, "CRASHED with signal %d", WTERMSIG(status[m]));
        else if (WIFEXITED(status[m]) && WEXITSTATUS(status[m]) == 0)
            broken = 0;
        else
            snprintf(what, sizeof what, "broke the contract (see above)");
        if (broken && in_list(known, name)) {
            printf("KNOWN BUG %s %s: %s (docs/reliability.md)\n", argv[1], name, what);
            known_seen++;
        } else if (broken) {
            printf("FAIL %s %s: %s\n", argv[1], name, what);
            failures++;
        } else if (in_list(known, name)) {
            printf("FAIL %s %s: listed as a known bug but now passes: remove it from "
                   "--known-bugs in tests/reliability/CMakeLists.txt\n",
                   argv[1], name);
            failures++;
        }
    }
    printf("%s: %d failure(s), %d known bug(s)\n", argv[1], failures, known_seen);
    return failures ? 1 : 0;
}
