/* concurrency.c -- concurrent adds from threads and processes: exact sums (docs/semantics.md). */
#include "conformance.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

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
    int started = 0;
    for (int i = 0; i < NTHREADS; i++) {
        adders[i].f = f;
        adders[i].index = i;
        adders[i].keys = keys;
        if (pthread_create(&th[i], NULL, adder_main, &adders[i]) != 0)
            break;
        started++;
    }
    /* Every thread is joined before anything is asserted: a failed
     * assertion must not leave threads running on the fixture that the
     * teardown frees. */
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(started, NTHREADS);
    int64_t want[NCOUNTERS] = {0};
    for (int i = 0; i < NTHREADS; i++) {
        if (adders[i].failures)
            fail_msg("thread %d: %d adds failed, first with %s", i, adders[i].failures,
                     kvi_status_name(adders[i].first_error));
        for (int j = 0; j < NCOUNTERS; j++)
            want[j] += adders[i].sums[j];
    }
    for (int j = 0; j < NCOUNTERS; j++)
        expect_counter(f, &keys[j], want[j]);
}

/* What a worker process reports through its pipe. */
struct proc_result {
    int64_t sums[NCOUNTERS];
    int failures;
    kvi_status first_error;
};

/* A worker process may take this long; then it is killed (and the test
 * fails naming it) instead of the suite hanging to CTest's timeout. */
#define PROC_DEADLINE_S 60

/* The body of a worker process: its own context; no cmocka (its signal
 * handlers would turn a crash into a second copy of the test run), no exit
 * hooks (_exit), killed by SIGALRM when it outlives the deadline. */
static void proc_main(const tkey *keys, int p, int fd)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    alarm(PROC_DEADLINE_S);
    struct proc_result res;
    memset(&res, 0, sizeof res);
    kvi *k = NULL;
    kvi_conn *c = NULL;
    if (kvi_new(&k) != KVI_OK || conf_define_engine(k) != KVI_OK ||
        kvi_conn_get(k, conf_g.id, &c) != KVI_OK) {
        res.failures = -1;
    } else {
        run_adds(k, c, conf_g.id, (tkey *)keys, 100 + p, res.sums, &res.failures, &res.first_error);
    }
    kvi_free(k);
    ssize_t w = write(fd, &res, sizeof res);
    _exit(w == (ssize_t)sizeof res ? 0 : 1);
}

/* Starts NPROCS workers, reads each one's result, and reaps every one of
 * them before returning -- also when one crashed, hung (killed at the
 * deadline) or could not be started -- so no assertion can leave a worker
 * behind.  status[p] is the wait status (a worker never started reads as
 * exit 127); res[p] is zeroed unless the worker reported. */
static void run_procs(const tkey *keys, struct proc_result *res, pid_t *pids, int *status)
{
    int fds[NPROCS], hung[NPROCS];
    memset(res, 0, NPROCS * sizeof *res);
    fflush(NULL);
    for (int p = 0; p < NPROCS; p++) {
        int pfd[2];
        pids[p] = -1;
        fds[p] = -1;
        hung[p] = 0;
        status[p] = 127 << 8;
        if (pipe(pfd) != 0)
            continue;
        pids[p] = fork();
        if (pids[p] == 0) {
            close(pfd[0]);
            proc_main(keys, p, pfd[1]);
        }
        close(pfd[1]);
        if (pids[p] < 0)
            close(pfd[0]);
        else
            fds[p] = pfd[0];
    }
    time_t deadline = time(NULL) + PROC_DEADLINE_S + 10;
    for (int p = 0; p < NPROCS; p++) {
        if (fds[p] < 0)
            continue;
        struct pollfd pf = {.fd = fds[p], .events = POLLIN};
        int left = (int)(deadline - time(NULL));
        if (left > 0 && poll(&pf, 1, left * 1000) == 1) {
            /* A report, or end of file from a worker that died. */
            struct proc_result r;
            if (read(fds[p], &r, sizeof r) == (ssize_t)sizeof r)
                res[p] = r;
        } else {
            hung[p] = 1;
        }
        close(fds[p]);
    }
    for (int p = 0; p < NPROCS; p++) {
        if (pids[p] <= 0)
            continue;
        if (hung[p])
            kill(pids[p], SIGKILL);
        while (waitpid(pids[p], &status[p], 0) < 0 && errno == EINTR)
            ;
    }
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
    struct proc_result res[NPROCS];
    pid_t pids[NPROCS];
    int status[NPROCS];
    run_procs(keys, res, pids, status);
    int64_t want[NCOUNTERS] = {0};
    for (int p = 0; p < NPROCS; p++) {
        if (!WIFEXITED(status[p]) || WEXITSTATUS(status[p]) != 0)
            fail_msg("worker process %d (pid %ld) %s %d", p, (long)pids[p],
                     WIFSIGNALED(status[p]) ? "was killed by signal" : "exited with",
                     WIFSIGNALED(status[p]) ? WTERMSIG(status[p]) : WEXITSTATUS(status[p]));
        if (res[p].failures)
            fail_msg("process %d: %d adds failed, first with %s", p, res[p].failures,
                     kvi_status_name(res[p].first_error));
        for (int j = 0; j < NCOUNTERS; j++)
            want[j] += res[p].sums[j];
    }
    for (int j = 0; j < NCOUNTERS; j++)
        expect_counter(f, &keys[j], want[j]);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_concurrent_add_exact_sums),
    CONF_TEST(test_concurrent_add_across_processes_exact_sums),
};

const conf_block conf_concurrency_block = {tests, sizeof tests / sizeof tests[0]};
