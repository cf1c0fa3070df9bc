/*
 * billing.c -- use case 2: several proxies behind DNS round robin debit
 * shared prepaid credit with atomic counters; nothing may be lost.
 *
 * N workers share one engine id: processes when the store is shared between
 * processes (KVI_CAP_SHARED: servers, local with shm=), else threads.  Call
 * i's INVITE lands on one random worker and its BYE on another random one
 * (often different): the INVITE worker leaves its decision under inv_<i>,
 * which the BYE worker waits for.  Each worker books the charges the store
 * acknowledged; at the end every user's credit must equal its initial
 * credit minus those.
 *
 * --logic reserve (the default): the INVITE reserves the first minute with a
 * bounded sub (403 when refused), the BYE reserves the further minutes the
 * call used (the call is cut off where one is refused) and gives back the
 * unused part.  --logic check: the old logic, read the credit at INVITE
 * (403 when <= 1) and charge at BYE.
 *
 * --overlap runs the other scenario (overlap.c): many calls of each user in
 * flight at once on several proxies, with the old check-at-INVITE logic and
 * with bounded reservations, side by side.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "billing_logic.h"
#include "overlap.h"

/* Seconds one reservation of the reserve logic covers (the first minute). */
#define CLASSIC_QUOTA_S 60

typedef struct config {
    const char *url;
    char id[300];
    int workers;
    int users;
    int calls;
    int64_t credit;
    uint64_t seed;
    char prefix[64];
    int use_processes;
    int overlap;      /* --overlap */
    int inflight;     /* --inflight */
    unsigned logics;  /* --logic, OVERLAP_LOGIC_* (overlap mode) */
    int users_given;  /* --users / --credit / --calls given: else the */
    int credit_given; /* overlap mode has its own defaults */
    int calls_given;
} config;

/* Per worker results, in shared memory when workers are processes. */
typedef struct worker_result {
    uint64_t accepted, rejected, charged_calls, errors, ops, cut_off;
    int failed;
    int64_t charged[]; /* per user, acknowledged charges */
} worker_result;

static const config *cfg;
static unsigned char *results; /* workers x result_size bytes */
static size_t result_size;

static worker_result *result_of(int w)
{
    return (worker_result *)(void *)(results + (size_t)w * result_size);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* The deterministic shape of call i. */
static uint64_t call_attr(int i, int which)
{
    return mix(cfg->seed * 1000003u + (uint64_t)i * 8u + (uint64_t)which);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void user_name(int u, char *buf, size_t len)
{
    snprintf(buf, len, "u%05d", u);
}

/* Waits (bounded) for the INVITE worker's decision on call i. */
static kvi_status wait_decision(kvi_conn *c, int i, int *admitted, uint64_t *ops)
{
    char key[128];
    int klen = snprintf(key, sizeof key, "%sinv_%d", cfg->prefix, i);
    int64_t deadline = mono_ms() + 30000;
    for (;;) {
        kvi_value v = KVI_VALUE_INIT;
        kvi_status st = kvi_conn_fetch(c, key, (size_t)klen, &v);
        (*ops)++;
        if (st == KVI_OK) {
            *admitted = v.len == 1 && v.data[0] == '1';
            kvi_value_free(&v);
            (*ops)++;
            return kvi_conn_remove(c, key, (size_t)klen);
        }
        if (st != KVI_NOT_FOUND || mono_ms() > deadline)
            return st == KVI_NOT_FOUND ? KVI_E_TIMEOUT : st;
        usleep(50);
    }
}

static void run_worker(kvi *k, kvi_conn *c, int w)
{
    worker_result *r = result_of(w);
    for (int i = 0; i < cfg->calls; i++) {
        int inv_w = (int)(call_attr(i, 1) % (uint64_t)cfg->workers);
        int bye_w = (int)(call_attr(i, 2) % (uint64_t)cfg->workers);
        if (inv_w != w && bye_w != w)
            continue;
        char call_id[32], user[32];
        snprintf(call_id, sizeof call_id, "c%d", i);
        user_name((int)(call_attr(i, 3) % (uint64_t)cfg->users), user, sizeof user);
        int64_t start = 1700000000000 + (int64_t)i * 10;
        if (inv_w == w) {
            int64_t cost = 1 + (int64_t)(call_attr(i, 5) % 3), reserved = 0;
            int code = cfg->logics == OVERLAP_LOGIC_CHECK
                           ? billing_invite(c, cfg->prefix, call_id, user, cost, start)
                           : billing_invite_reserve(c, cfg->prefix, call_id, user, cost,
                                                    CLASSIC_QUOTA_S, start, &reserved);
            r->charged[atoi(user + 1)] += reserved;
            r->ops += 2;
            if (code < 0) {
                fprintf(stderr, "worker %d: INVITE %s: %s: %s\n", w, call_id,
                        kvi_strerror((kvi_status)-code), kvi_errmsg(k));
                r->errors++;
                code = BILLING_NO_CREDIT; /* the call was not set up */
            }
            if (code == BILLING_OK)
                r->accepted++;
            else
                r->rejected++;
            char key[128];
            int klen = snprintf(key, sizeof key, "%sinv_%d", cfg->prefix, i);
            kvi_status st = kvi_conn_store(c, key, (size_t)klen, code == BILLING_OK ? "1" : "0",
                                           1, 0);
            r->ops++;
            if (st != KVI_OK) {
                fprintf(stderr, "worker %d: %s: %s\n", w, kvi_strerror(st), kvi_errmsg(k));
                r->failed = 1;
                return;
            }
        }
        if (bye_w == w) {
            int admitted = 0;
            kvi_status st = wait_decision(c, i, &admitted, &r->ops);
            if (st != KVI_OK) {
                fprintf(stderr, "worker %d: waiting for INVITE %s: %s: %s\n", w, call_id,
                        kvi_strerror(st), kvi_errmsg(k));
                r->failed = 1;
                return;
            }
            if (!admitted)
                continue;
            int64_t end = start + 1000 * (1 + (int64_t)(call_attr(i, 4) % 300));
            char who[32] = "u0";
            int64_t amount = 0;
            int cut = 0;
            if (cfg->logics == OVERLAP_LOGIC_CHECK)
                st = billing_bye(c, cfg->prefix, call_id, end, who, sizeof who, &amount);
            else
                st = billing_bye_reserve(c, cfg->prefix, call_id, end, CLASSIC_QUOTA_S, who,
                                         sizeof who, &amount, &cut);
            r->ops += 3;
            r->charged[atoi(who + 1)] += amount;
            r->cut_off += (uint64_t)cut;
            if (st == KVI_OK) {
                r->charged_calls++;
            } else {
                fprintf(stderr, "worker %d: BYE %s: %s: %s\n", w, call_id, kvi_strerror(st),
                        kvi_errmsg(k));
                r->errors++;
            }
        }
    }
}

typedef struct thread_arg {
    kvi *k;
    kvi_conn *c;
    int w;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    run_worker(a->k, a->c, a->w);
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: billing [--url URL] [--engine ID] [--workers N] [--users N] [--calls N]\n"
            "               [--credit N] [--seed N]\n"
            "       billing --overlap [--logic both|check|reserve] [--inflight N] [same options]\n"
            "  --url URL     engine to share (default: the embedded local engine)\n"
            "  --engine ID   engine id (default: the URL's id, else local)\n"
            "  --workers N   proxies (default 4): threads on local, processes otherwise\n"
            "  --users N     prepaid users (default 100)\n"
            "  --calls N     INVITEs (default 20000)\n"
            "  --credit N    initial credit per user (default 20000)\n"
            "  --overlap     many concurrent calls per user on several proxies (defaults: 8\n"
            "                users, credit 200, 2000 calls per logic), old and new logic\n"
            "  --logic L     check: read the credit at INVITE (403 when <= 1), charge at BYE;\n"
            "                reserve: bounded reservations of the credit (403 when refused),\n"
            "                give back the unused part at BYE (default); with --overlap\n"
            "                also both (its default), side by side\n"
            "  --inflight N  with --overlap: calls in flight per proxy (default 16)\n");
}

static int parse_args(int argc, char **argv, config *c)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--overlap") == 0) {
            c->overlap = 1;
            i--; /* a flag without a value */
            continue;
        }
        if (v == NULL)
            return -1;
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        int num_ok = *v && !*end && errno == 0 && n > 0;
        if (strcmp(a, "--url") == 0)
            c->url = v;
        else if (strcmp(a, "--engine") == 0)
            snprintf(c->id, sizeof c->id, "%s", v);
        else if (strcmp(a, "--workers") == 0 && num_ok && n <= 64)
            c->workers = (int)n;
        else if (strcmp(a, "--users") == 0 && num_ok && n <= 99999)
            c->users = (int)n, c->users_given = 1;
        else if (strcmp(a, "--calls") == 0 && num_ok && n <= 100000000)
            c->calls = (int)n, c->calls_given = 1;
        else if (strcmp(a, "--credit") == 0 && num_ok)
            c->credit = n, c->credit_given = 1;
        else if (strcmp(a, "--inflight") == 0 && num_ok && n <= 256)
            c->inflight = (int)n;
        else if (strcmp(a, "--logic") == 0 && strcmp(v, "both") == 0)
            c->logics = OVERLAP_LOGIC_CHECK | OVERLAP_LOGIC_RESERVE;
        else if (strcmp(a, "--logic") == 0 && strcmp(v, "check") == 0)
            c->logics = OVERLAP_LOGIC_CHECK;
        else if (strcmp(a, "--logic") == 0 && strcmp(v, "reserve") == 0)
            c->logics = OVERLAP_LOGIC_RESERVE;
        else if (strcmp(a, "--seed") == 0 && num_ok)
            c->seed = (uint64_t)n;
        else
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static config conf = {.workers = 4,
                          .users = 100,
                          .calls = 20000,
                          .credit = 20000,
                          .seed = 1,
                          .inflight = 16,
                          .logics = OVERLAP_LOGIC_CHECK | OVERLAP_LOGIC_RESERVE};
    if (parse_args(argc, argv, &conf) != 0 || (!conf.overlap && conf.inflight != 16)) {
        usage(stderr);
        return 2;
    }
    if (conf.id[0] == '\0') {
        if (conf.url != NULL) {
            kvi_url *u = NULL;
            char err[256];
            if (kvi_url_parse(conf.url, &u, err, sizeof err) != KVI_OK) {
                fprintf(stderr, "billing: %s\n", err);
                return 2;
            }
            snprintf(conf.id, sizeof conf.id, "%s", u->id);
            kvi_url_free(u);
        } else {
            snprintf(conf.id, sizeof conf.id, "local");
        }
    }
    snprintf(conf.prefix, sizeof conf.prefix, "bill%ld.%ld:", (long)getpid(), (long)time(NULL));
    cfg = &conf;
    if (conf.overlap) {
        overlap_opts o = {conf.url,
                          conf.id,
                          conf.prefix,
                          conf.workers,
                          conf.users_given ? conf.users : 8,
                          conf.calls_given ? conf.calls : 2000,
                          conf.inflight,
                          conf.credit_given ? conf.credit : 200,
                          conf.seed,
                          conf.logics};
        return overlap_run(&o);
    }

    kvi *k = NULL;
    kvi_conn *c = NULL;
    if (billing_open(conf.url, conf.id, &k, &c) != KVI_OK)
        return 1;
    conf.use_processes = (kvi_conn_caps(c) & KVI_CAP_SHARED) != 0;

    result_size = (sizeof(worker_result) + (size_t)conf.users * sizeof(int64_t) + 63) & ~(size_t)63;
    results = mmap(NULL, result_size * (size_t)conf.workers, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (results == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (int u = 0; u < conf.users; u++) {
        char user[32];
        user_name(u, user, sizeof user);
        kvi_status st = billing_set_credit(c, conf.prefix, user, conf.credit);
        if (st != KVI_OK) {
            fprintf(stderr, "billing: set credit: %s: %s\n", kvi_strerror(st), kvi_errmsg(k));
            return 1;
        }
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (conf.use_processes) {
        pid_t pids[64];
        for (int w = 0; w < conf.workers; w++) {
            pids[w] = fork();
            if (pids[w] == 0) {
                /* A proxy of its own: its own context and connections. */
                kvi *wk = NULL;
                kvi_conn *wc = NULL;
                if (billing_open(cfg->url, cfg->id, &wk, &wc) != KVI_OK)
                    _exit(1);
                run_worker(wk, wc, w);
                kvi_free(wk);
                _exit(0);
            }
        }
        for (int w = 0; w < conf.workers; w++) {
            int status = 0;
            waitpid(pids[w], &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                result_of(w)->failed = 1;
        }
    } else {
        pthread_t th[64];
        thread_arg args[64];
        for (int w = 0; w < conf.workers; w++) {
            args[w] = (thread_arg){k, c, w};
            pthread_create(&th[w], NULL, thread_main, &args[w]);
        }
        for (int w = 0; w < conf.workers; w++)
            pthread_join(th[w], NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    uint64_t accepted = 0, rejected = 0, errors = 0, ops = 0, charged_calls = 0, cut_off = 0;
    int failed = 0;
    for (int w = 0; w < conf.workers; w++) {
        worker_result *r = result_of(w);
        accepted += r->accepted;
        rejected += r->rejected;
        errors += r->errors;
        ops += r->ops;
        charged_calls += r->charged_calls;
        cut_off += r->cut_off;
        failed |= r->failed;
    }
    int differ = 0;
    for (int u = 0; u < conf.users; u++) {
        char user[32], key[128];
        user_name(u, user, sizeof user);
        int64_t expect = conf.credit;
        for (int w = 0; w < conf.workers; w++)
            expect -= result_of(w)->charged[u];
        int klen = snprintf(key, sizeof key, "%scredit_%s", conf.prefix, user);
        int64_t got = 0;
        kvi_status st = kvi_conn_counter_fetch(c, key, (size_t)klen, &got);
        if (st != KVI_OK || got != expect) {
            if (differ++ < 10)
                printf("credit differs: %s expected %" PRId64 " got %" PRId64 " (%s)\n", user,
                       expect, got, kvi_strerror(st));
        }
        kvi_conn_remove(c, key, (size_t)klen);
    }
    int check = conf.logics == OVERLAP_LOGIC_CHECK;
    printf("billing on '%s': %d %s, %d users, %d calls, logic %s\n", conf.id, conf.workers,
           conf.use_processes ? "processes" : "threads", conf.users, conf.calls,
           check ? "check-at-INVITE" : "reserve");
    printf("calls accepted %" PRIu64 ", rejected (403 Not enough credit) %" PRIu64
           ", charged %" PRIu64 ", errors %" PRIu64,
           accepted, rejected, charged_calls, errors);
    if (!check)
        printf(", cut off when the credit ran out %" PRIu64, cut_off);
    printf("\n");
    printf("%" PRIu64 " operations in %.2f s: %.0f ops/s\n", ops, secs, (double)ops / secs);
    if (differ == 0 && !failed)
        printf("credits exact: yes\n");
    else
        printf("credits exact: no (%d users differ%s)\n", differ,
               failed ? ", a worker failed" : "");
    munmap(results, result_size * (size_t)conf.workers);
    kvi_free(k);
    return differ == 0 && !failed ? 0 : 1;
}
