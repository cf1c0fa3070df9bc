/* concurrency.c -- concurrent adds from threads and processes: exact sums (docs/semantics.md). */
#include "conformance.h"

#include <pthread.h>
#include <sys/wait.h>

/* ---- concurrency ------------------------------------------------------------------- */

struct adder {
    fx *f;
    int index;
    tkey *keys;
    int64_t sums[NCOUNTERS]; /* what this thread added */
    int failures;
    kvi_status first_error;
};

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* A random delta: mostly small, sometimes large, either sign. */
static int64_t random_delta(uint64_t *x)
{
    uint64_t r = xorshift(x);
    int64_t mag = (r & 7u) == 0 ? (int64_t)((r >> 8) & ((UINT64_C(1) << 36) - 1u))
                                : (int64_t)((r >> 8) % 1000u);
    return (r & 16u) ? -mag : mag;
}

/* One worker: conf_g.ops random adds and subs on the shared keys. */
static void run_adds(kvi *k, kvi_conn *c, const char *id, tkey *keys, int index, int64_t *sums,
                     int *failures, kvi_status *first_error)
{
    uint64_t x = 0x9e3779b97f4a7c15u * (uint64_t)(index + 1);
    for (int i = 0; i < conf_g.ops; i++) {
        uint64_t r = xorshift(&x);
        size_t which = (size_t)(r % NCOUNTERS);
        int64_t d = random_delta(&x);
        const tkey *kk = &keys[which];
        kvi_status st;
        int use_sub = (r >> 20) & 1u;
        if ((r >> 21) & 1u)
            st = use_sub ? kvi_conn_sub(c, kk->b, kk->n, d, 0, NULL)
                         : kvi_conn_add(c, kk->b, kk->n, d, 0, NULL);
        else
            st = use_sub ? kvi_sub(k, id, kk->b, kk->n, d, 0, NULL)
                         : kvi_add(k, id, kk->b, kk->n, d, 0, NULL);
        if (st == KVI_OK) {
            sums[which] += use_sub ? -d : d;
        } else if ((*failures)++ == 0) {
            *first_error = st;
        }
    }
}

static void *adder_main(void *arg)
{
    struct adder *a = arg;
    run_adds(a->f->k, a->f->c, a->f->id, a->keys, a->index, a->sums, &a->failures, &a->first_error);
    return NULL;
}

static void test_concurrent_add_exact_sums(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    tkey keys[NCOUNTERS];
    char name[32];
    for (int i = 0; i < NCOUNTERS; i++) {
        snprintf(name, sizeof name, "conc:%d", i);
        keys[i] = key(f, name);
    }
    struct adder adders[NTHREADS];
    pthread_t th[NTHREADS];
    memset(adders, 0, sizeof adders);
    for (int i = 0; i < NTHREADS; i++) {
        adders[i].f = f;
        adders[i].index = i;
        adders[i].keys = keys;
        assert_int_equal(pthread_create(&th[i], NULL, adder_main, &adders[i]), 0);
    }
    int64_t want[NCOUNTERS] = {0};
    for (int i = 0; i < NTHREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (adders[i].failures)
            fail_msg("thread %d: %d adds failed, first with %s", i, adders[i].failures,
                     kvi_status_name(adders[i].first_error));
        for (int j = 0; j < NCOUNTERS; j++)
            want[j] += adders[i].sums[j];
    }
    for (int j = 0; j < NCOUNTERS; j++)
        expect_counter(f, &keys[j], want[j]);
}

/* Same with processes, each with its own context: only engines whose data
 * is shared between processes can pass it. */
static void test_concurrent_add_across_processes_exact_sums(void **state)
{
    fx *f = F;
    if (counters_unsupported(f))
        return;
    if (!has(f, KVI_CAP_SHARED)) {
        kvi_test_not_applicable("engine %s does not share data between processes "
                                "(no KVI_CAP_SHARED)",
                                conf_g.scheme);
        return;
    }
    tkey keys[NCOUNTERS];
    char name[32];
    for (int i = 0; i < NCOUNTERS; i++) {
        snprintf(name, sizeof name, "pconc:%d", i);
        keys[i] = key(f, name);
    }
    int fds[NPROCS][2];
    pid_t pids[NPROCS];
    fflush(NULL);
    for (int p = 0; p < NPROCS; p++) {
        assert_int_equal(pipe(fds[p]), 0);
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            /* Child: its own context; no cmocka, no exit hooks (_exit). */
            struct {
                int64_t sums[NCOUNTERS];
                int failures;
                kvi_status first_error;
            } res;
            memset(&res, 0, sizeof res);
            kvi *k = NULL;
            kvi_conn *c = NULL;
            if (kvi_new(&k) != KVI_OK || conf_define_engine(k) != KVI_OK ||
                kvi_conn_get(k, conf_g.id, &c) != KVI_OK) {
                res.failures = -1;
            } else {
                run_adds(k, c, conf_g.id, keys, 100 + p, res.sums, &res.failures, &res.first_error);
            }
            kvi_free(k);
            ssize_t w = write(fds[p][1], &res, sizeof res);
            _exit(w == (ssize_t)sizeof res ? 0 : 1);
        }
        close(fds[p][1]);
    }
    int64_t want[NCOUNTERS] = {0};
    for (int p = 0; p < NPROCS; p++) {
        struct {
            int64_t sums[NCOUNTERS];
            int failures;
            kvi_status first_error;
        } res;
        ssize_t r = read(fds[p][0], &res, sizeof res);
        close(fds[p][0]);
        int st = 0;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_int_equal(r, (ssize_t)sizeof res);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (res.failures)
            fail_msg("process %d: %d adds failed, first with %s", p, res.failures,
                     kvi_status_name(res.first_error));
        for (int j = 0; j < NCOUNTERS; j++)
            want[j] += res.sums[j];
    }
    for (int j = 0; j < NCOUNTERS; j++)
        expect_counter(f, &keys[j], want[j]);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_concurrent_add_exact_sums),
    CONF_TEST(test_concurrent_add_across_processes_exact_sums),
};

const conf_block conf_concurrency_block = {tests, sizeof tests / sizeof tests[0]};
