/* rel_util.c -- helpers and the billing workload driver (see rel_util.h). */
#include "rel_util.h"
#include "testserver.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "billing_logic.h"

uint64_t rel_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (n != 2)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096) / 1024u;
}

int rel_asan(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#else
    return 0;
#endif
#else
    return 0;
#endif
}

void rel_skip(const char *why)
{
    if (kvi_ts_servers_required()) {
        printf("FAILED: %s -- KVI_REQUIRE_SERVERS=1 says this test must run here\n", why);
        fflush(stdout);
        exit(1);
    }
    printf("SKIP: %s\n", why);
    fflush(stdout);
    exit(REL_SKIP);
}

void rel_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("FAIL: ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    exit(1);
}

long rel_env_long(const char *name, long def)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    return (*end == '\0' && n > 0) ? n : def;
}

/* ---- billing --------------------------------------------------------------- */

void rel_billing_user(int u, char *buf, size_t len)
{
    snprintf(buf, len, "u%04d", u);
}

kvi_status rel_billing_init(rel_billing *b)
{
    b->users = calloc((size_t)b->nusers, sizeof *b->users);
    b->tids = calloc((size_t)b->threads, sizeof *b->tids);
    if (b->users == NULL || b->tids == NULL)
        return KVI_E_NOMEM;
    pthread_mutex_init(&b->mu, NULL);
    kvi_status st = KVI_OK;
    for (int u = 0; u < b->nusers; u++) {
        char user[32];
        rel_billing_user(u, user, sizeof user);
        int64_t until = kvi_test_mono_ms() + 10000;
        while ((st = billing_set_credit(b->conn, b->prefix, user, b->credit)) != KVI_OK &&
               kvi_test_mono_ms() < until)
            kvi_test_sleep_ms(100);
        if (st != KVI_OK)
            return st;
    }
    return KVI_OK;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15u);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static void atomic_max(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load(a);
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

struct worker {
    rel_billing *b;
    int index;
};

static void count_status(rel_billing *b, kvi_status st)
{
    if ((unsigned)st < KVI_STATUS_COUNT)
        atomic_fetch_add(&b->status_count[st], 1);
}

/* Books an INVITE/BYE that ended at `end` after `took` ms. */
static void book_op(rel_billing *b, int u, int ok, int64_t end, int64_t took)
{
    if (ok) {
        atomic_fetch_add(&b->ops_ok, 1);
        atomic_max(&b->max_ok_ms, took);
        int64_t mark = atomic_load(&b->mark_ms);
        if (mark != 0 && end >= mark) {
            atomic_fetch_add(&b->ok_after_mark, 1);
            pthread_mutex_lock(&b->mu);
            if (b->users[u].first_ok_after_mark == 0)
                b->users[u].first_ok_after_mark = end;
            pthread_mutex_unlock(&b->mu);
        }
    } else {
        atomic_fetch_add(&b->ops_failed, 1);
        atomic_max(&b->max_fail_ms, took);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    rel_billing *b = w->b;
    uint64_t seed = (uint64_t)w->index * 7919u + (uint64_t)kvi_test_mono_ms();
    int64_t deadline = b->started_ms + b->run_ms;
    /* Simulated SIP time: each call gets its own window, so BYE is always
     * later than INVITE. */
    int64_t sim_ms = 1700000000000 + (int64_t)w->index * 1000000000000;
    for (uint64_t seq = 0; kvi_test_mono_ms() < deadline; seq++) {
        int u = (int)(splitmix(&seed) % (uint64_t)b->nusers);
        char user[32], call_id[64];
        rel_billing_user(u, user, sizeof user);
        snprintf(call_id, sizeof call_id, "w%d-c%" PRIu64, w->index, seq);
        int64_t cost = 1 + (int64_t)(splitmix(&seed) % 9u);
        int64_t dur_ms = 1 + (int64_t)(splitmix(&seed) % 60000u);
        int64_t start = sim_ms;
        sim_ms += 100000;

        int64_t t0 = kvi_test_mono_ms();
        int inv = billing_invite(b->conn, b->prefix, call_id, user, cost, start);
        int64_t t1 = kvi_test_mono_ms();
        if (inv < 0) {
            count_status(b, (kvi_status)-inv);
            book_op(b, u, 0, t1, t1 - t0);
            continue;
        }
        count_status(b, KVI_OK);
        book_op(b, u, 1, t1, t1 - t0);
        if (inv != BILLING_OK)
            continue;

        char who[128] = "";
        int64_t charged = 0;
        int64_t amount = ((dur_ms + 999) / 1000) * cost;
        t0 = kvi_test_mono_ms();
        kvi_status st =
            billing_bye(b->conn, b->prefix, call_id, start + dur_ms, who, sizeof who, &charged);
        t1 = kvi_test_mono_ms();
        count_status(b, st);
        if (st == KVI_OK) {
            book_op(b, u, 1, t1, t1 - t0);
            pthread_mutex_lock(&b->mu);
            b->users[u].acked += charged;
            b->users[u].acked_calls++;
            pthread_mutex_unlock(&b->mu);
        } else if (st == KVI_NOT_FOUND) {
            /* The acknowledged dialog record is gone: nothing was charged. */
            book_op(b, u, 1, t1, t1 - t0);
            atomic_fetch_add(&b->dialogs_lost, 1);
        } else {
            /* The sub may have reached the store before the failure. */
            book_op(b, u, 0, t1, t1 - t0);
            pthread_mutex_lock(&b->mu);
            b->users[u].unknown += amount;
            b->users[u].unknown_calls++;
            pthread_mutex_unlock(&b->mu);
        }
    }
    free(w);
    return NULL;
}

void rel_billing_start(rel_billing *b)
{
    b->started_ms = kvi_test_mono_ms();
    for (int i = 0; i < b->threads; i++) {
        struct worker *w = malloc(sizeof *w);
        if (w == NULL)
            rel_fail("out of memory");
        w->b = b;
        w->index = i;
        if (pthread_create(&b->tids[i], NULL, worker_main, w) != 0)
            rel_fail("pthread_create");
    }
}

int rel_billing_join(rel_billing *b, int64_t grace_ms)
{
    int64_t limit = b->started_ms + b->run_ms + grace_ms;
    int ok = 0;
    for (int i = 0; i < b->threads; i++) {
        for (;;) {
            if (pthread_tryjoin_np(b->tids[i], NULL) == 0) {
                ok++;
                break;
            }
            if (kvi_test_mono_ms() > limit)
                break;
            kvi_test_sleep_ms(20);
        }
    }
    b->finished_ms = kvi_test_mono_ms();
    return ok == b->threads ? 0 : -1;
}

kvi_status rel_billing_credit(rel_billing *b, int u, int64_t *credit)
{
    char user[32], key[256];
    rel_billing_user(u, user, sizeof user);
    int klen = snprintf(key, sizeof key, "%scredit_%s", b->prefix, user);
    int64_t until = kvi_test_mono_ms() + 15000;
    kvi_status st;
    do {
        st = kvi_conn_counter_fetch(b->conn, key, (size_t)klen, credit);
        if (st == KVI_OK || st == KVI_NOT_FOUND)
            return st;
        kvi_test_sleep_ms(100);
    } while (kvi_test_mono_ms() < until);
    return st;
}

void rel_billing_print(const rel_billing *b, const char *label)
{
    printf("%s: %" PRIu64 " ops ok, %" PRIu64 " failed; max failing op %" PRId64
           " ms, max ok op %" PRId64 " ms; statuses:",
           label, atomic_load(&b->ops_ok), atomic_load(&b->ops_failed),
           atomic_load(&b->max_fail_ms), atomic_load(&b->max_ok_ms));
    for (int s = 0; s < KVI_STATUS_COUNT; s++) {
        uint64_t n = atomic_load(&b->status_count[s]);
        if (n > 0)
            printf(" %s=%" PRIu64, kvi_status_name((kvi_status)s), n);
    }
    printf("\n");
}

void rel_billing_free(rel_billing *b)
{
    free(b->users);
    free(b->tids);
    pthread_mutex_destroy(&b->mu);
}
