/*
 * rel_shm.c -- the shared local collection (local://?shm=NAME) against
 * processes that die at any moment, and seen from an unrelated `kvi`.
 *
 *   rel_shm SEGMENT_PREFIX KVI_BINARY CONFORMANCE_BINARY
 *
 * test_kill_workers_at_random_moments: rounds of forked workers, each its
 * own context on the same segment, adding random deltas to shared counters
 * (and churning the allocator with stores and removes of random sizes);
 * the parent SIGKILLs them at random moments, then checks the structure
 * (kvi__sh_check: chains, sums, free lists, no leak) and that every
 * acknowledged add is in the sums, the only slack being the one add each
 * killed worker had in flight.  Hundreds of kills in a few seconds.
 *
 * test_unrelated_kvi_sees_what_a_worker_stored: a forked worker stores and
 * stays alive; the kvi command (another program) lists, fetches, reads
 * stats, removes.
 *
 * test_conformance_passes_with_forked_workers_attached: the whole
 * conformance suite (another program) runs on a segment while forked
 * workers keep writing their own keys in it and the parent SIGKILLs and
 * replaces one of them every few milliseconds.
 *
 * Segments are SEGMENT_PREFIX-kill and -cli; they are removed at the end
 * of each test (CTest fixtures remove them too when this program dies).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engines/local/local.h"
#include "engines/local/shm.h"
#include "kvi/kvi.h"

#define WORKERS 4
#define ROUNDS 100
#define NCOUNTERS 16
#define NJUNK 200

static const char *g_prefix;
static const char *g_kvi;
static const char *g_conformance;

/* Shared with the workers (MAP_SHARED | MAP_ANONYMOUS). */
struct worker_slot {
    volatile int started;
    /* The add in flight: set before the call, cleared after it is
     * acknowledged and booked. */
    volatile int inflight_key; /* -1 = none */
    volatile int64_t inflight_delta;
    volatile int64_t acked[NCOUNTERS];
};

struct shared {
    struct worker_slot w[WORKERS];
};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static void counter_key(char *buf, size_t len, int i)
{
    snprintf(buf, len, "counter:%02d", i);
}

/* A worker: never returns; runs until killed. */
static void worker(const char *url, struct worker_slot *slot, uint64_t seed)
{
    kvi *k = NULL;
    kvi_conn *c = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url) != KVI_OK ||
        kvi_conn_get(k, "local:kill", &c) != KVI_OK)
        _exit(3);
    slot->started = 1;
    char key[64], val[2100];
    memset(val, 'v', sizeof(val));
    for (;;) {
        uint64_t r = rng_next(&seed);
        int op = (int)(r % 8u);
        if (op < 5) {
            int i = (int)((r >> 8) % NCOUNTERS);
            /* Deltas of changing magnitude and sign move counters across
             * digit counts, so adds also replace entries. */
            int64_t d = (int64_t)((r >> 16) % 200000u) - 90000;
            counter_key(key, sizeof(key), i);
            slot->inflight_delta = d;
            slot->inflight_key = i;
            int64_t nv;
            if (kvi_conn_add(c, key, strlen(key), d, 0, &nv) == KVI_OK) {
                slot->acked[i] += d;
                slot->inflight_key = -1;
            } else {
                _exit(4);
            }
        } else if (op < 7) {
            int n = snprintf(key, sizeof(key), "junk:%u", (unsigned)((r >> 8) % NJUNK));
            size_t vlen = (size_t)((r >> 20) % 2000u);
            (void)kvi_conn_store(c, key, (size_t)n, val, vlen, (r >> 40) % 3u == 0 ? 1 : 0);
        } else {
            int n = snprintf(key, sizeof(key), "junk:%u", (unsigned)((r >> 8) % NJUNK));
            (void)kvi_conn_remove(c, key, (size_t)n);
        }
    }
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void seg_name(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "%s-%s", g_prefix, what);
}

/* The sum check: table - acked must be a sum of a subset of the killed
 * workers' in-flight deltas on that key. */
static int sum_ok(int64_t table, int64_t acked, const int64_t *maybe, int nmaybe)
{
    for (int mask = 0; mask < (1 << nmaybe); mask++) {
        int64_t s = acked;
        for (int j = 0; j < nmaybe; j++)
            if (mask & (1 << j))
                s += maybe[j];
        if (s == table)
            return 1;
    }
    return 0;
}

static void test_kill_workers_at_random_moments(void **state)
{
    (void)state;
    char name[300], url[400], err[512];
    seg_name(name, sizeof(name), "kill");
    (void)kvi__sh_unlink(name, err, sizeof(err));
    snprintf(url, sizeof(url), "local:kill://?shm=%s&max_memory=2m&evict=none", name);

    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi__sh_config cfg = {.name = name, .max_memory = 2u << 20, .evict = KVI__LT_EVICT_NONE};
    kvi__sh *s = NULL;
    int created = 0;
    kvi_status st = kvi__sh_open(k, &cfg, &s, &created, err, sizeof(err));
    if (st != KVI_OK)
        fail_msg("open %s: %s", name, err);

    struct shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    memset(sh, 0, sizeof(*sh));
    int64_t acked_total[NCOUNTERS] = {0};
    uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    printf("rel_shm: seed %llu\n", (unsigned long long)seed);
    int kills = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t pids[WORKERS];
        for (int w = 0; w < WORKERS; w++) {
            struct worker_slot *slot = &sh->w[w];
            slot->started = 0;
            slot->inflight_key = -1;
            memset((void *)slot->acked, 0, sizeof(slot->acked));
            fflush(NULL);
            pids[w] = fork();
            assert_true(pids[w] >= 0);
            if (pids[w] == 0)
                worker(url, slot, seed ^ ((uint64_t)round << 20) ^ (uint64_t)(w + 1) * 7919u);
        }
        /* Wait until each worker runs its loop (bounded), then kill them
         * one after the other at random moments. */
        for (int w = 0; w < WORKERS; w++)
            for (int t = 0; t < 2000 && !sh->w[w].started; t++)
                pause_us(1000);
        for (int w = 0; w < WORKERS; w++) {
            pause_us((long)(rng_next(&seed) % 3000u));
            kill(pids[w], SIGKILL);
            kills++;
        }
        int64_t maybe[NCOUNTERS][WORKERS];
        int nmaybe[NCOUNTERS] = {0};
        for (int w = 0; w < WORKERS; w++) {
            int status = 0;
            assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
            if (!WIFSIGNALED(status))
                fail_msg("worker %d of round %d ended with status %d, not by the kill", w, round,
                         WEXITSTATUS(status));
            if (!sh->w[w].started)
                fail_msg("worker %d of round %d never started", w, round);
            for (int i = 0; i < NCOUNTERS; i++)
                acked_total[i] += sh->w[w].acked[i];
            int ik = sh->w[w].inflight_key;
            if (ik >= 0)
                maybe[ik][nmaybe[ik]++] = sh->w[w].inflight_delta;
        }
        st = kvi__sh_check(s, err, sizeof(err));
        if (st != KVI_OK)
            fail_msg("round %d (after %d kills): structure check failed: %s", round, kills, err);
        /* Every acknowledged add is in the sums; an in-flight one may or
         * may not be.  The table is then the new baseline. */
        for (int i = 0; i < NCOUNTERS; i++) {
            char key[64];
            counter_key(key, sizeof(key), i);
            int64_t v = 0;
            st = kvi__sh_counter(s, key, strlen(key), &v);
            if (st == KVI_NOT_FOUND)
                v = 0;
            else
                assert_int_equal(st, KVI_OK);
            if (!sum_ok(v, acked_total[i], maybe[i], nmaybe[i]))
                fail_msg("round %d: %s is %lld, acknowledged adds sum to %lld (%d in flight)",
                         round, key, (long long)v, (long long)acked_total[i], nmaybe[i]);
            acked_total[i] = v;
        }
    }
    kvi__sh_info info;
    kvi__sh_info_get(s, &info);
    printf("rel_shm: %d kills in %d rounds, %llu lock repairs, structure intact, sums exact\n",
           kills, ROUNDS, (unsigned long long)info.repairs);
    /* With hundreds of kills of workers that spend most of their time
     * under a shard lock, the repair path must have run. */
    assert_true(info.repairs > 0);
    munmap(sh, sizeof(*sh));
    kvi__sh_close(s);
    kvi_free(k);
    assert_int_equal(kvi__sh_unlink(name, err, sizeof(err)), KVI_OK);
}

/* Runs the kvi command with args; returns its exit status and its standard
 * output in out. */
static int run_kvi(char *out, size_t out_len, const char *const *args)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(g_kvi, (char *const *)args);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while ((r = read(fds[0], out + got, out_len - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_unrelated_kvi_sees_what_a_worker_stored(void **state)
{
    (void)state;
    char name[300], url[400], err[512], out[4096];
    seg_name(name, sizeof(name), "cli");
    (void)kvi__sh_unlink(name, err, sizeof(err));
    snprintf(url, sizeof(url), "local://?shm=%s&max_memory=4m", name);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The server's worker: opens after the fork, stores, stays. */
        kvi *k = NULL;
        int ok = kvi_new(&k) == KVI_OK && kvi_add_url(k, url) == KVI_OK &&
                 kvi_store(k, "local", "passwd_alice", 12, "s3cret", 6, 0) == KVI_OK &&
                 kvi_store(k, "local", "passwd_bob", 10, "hunter2", 7, 0) == KVI_OK &&
                 kvi_add(k, "local", "credit:alice", 12, 42, 0, NULL) == KVI_OK;
        char c = ok ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    close(ready[1]);
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    assert_int_equal(c, 'y');

    const char *keys[] = {g_kvi, "-u", url, "keys", "local", "passwd_*", NULL};
    assert_int_equal(run_kvi(out, sizeof(out), keys), 0);
    assert_non_null(strstr(out, "passwd_alice"));
    assert_non_null(strstr(out, "passwd_bob"));
    assert_null(strstr(out, "credit"));
    const char *fetch[] = {g_kvi, "-u", url, "fetch", "local", "passwd_bob", NULL};
    assert_int_equal(run_kvi(out, sizeof(out), fetch), 0);
    assert_string_equal(out, "hunter2");
    const char *counter[] = {g_kvi, "-u", url, "counter", "local", "credit:alice", NULL};
    assert_int_equal(run_kvi(out, sizeof(out), counter), 0);
    assert_string_equal(out, "42\n");
    const char *stats[] = {g_kvi, "-u", url, "stats", "local", NULL};
    assert_int_equal(run_kvi(out, sizeof(out), stats), 0);
    assert_non_null(strstr(out, "entries"));
    assert_non_null(strstr(out, " 3"));
    const char *rm[] = {g_kvi, "-u", url, "remove", "local", "passwd_bob", NULL};
    assert_int_equal(run_kvi(out, sizeof(out), rm), 0);
    assert_int_equal(run_kvi(out, sizeof(out), fetch), 1);
    const char *unl[] = {g_kvi, "-u", "", "ping", "local", NULL};
    char unl_url[400];
    snprintf(unl_url, sizeof(unl_url), "local://?shm=%s&shm_unlink=yes", name);
    unl[2] = unl_url;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(run_kvi(out, sizeof(out), unl), 0);
    assert_int_equal(kvi__sh_unlink(name, err, sizeof(err)), KVI_NOT_FOUND);
}

/* A background worker: its own context, random traffic on bg:* keys. */
static void bg_worker(const char *url, uint64_t seed)
{
    kvi *k = NULL;
    kvi_conn *c = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url) != KVI_OK ||
        kvi_conn_get(k, "local:bg", &c) != KVI_OK)
        _exit(3);
    char key[32], val[3000];
    memset(val, 'b', sizeof(val));
    for (;;) {
        uint64_t r = rng_next(&seed);
        int n = snprintf(key, sizeof(key), "bg:%u", (unsigned)((r >> 8) % 500u));
        kvi_value v = KVI_VALUE_INIT;
        switch (r % 4u) {
        case 0:
            (void)kvi_conn_store(c, key, (size_t)n, val, (size_t)((r >> 20) % 3000u),
                                 (r >> 40) % 2u);
            break;
        case 1:
            (void)kvi_conn_fetch(c, key, (size_t)n, &v);
            kvi_value_free(&v);
            break;
        case 2:
            (void)kvi_conn_add(c, key, (size_t)n, 1, 0, NULL);
            break;
        default:
            (void)kvi_conn_remove(c, key, (size_t)n);
        }
    }
}

static pid_t spawn_bg(const char *url, uint64_t seed)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        bg_worker(url, seed);
    return pid;
}

static void test_conformance_passes_with_forked_workers_attached(void **state)
{
    (void)state;
    char name[300], url[400], bg_url[400], err[512];
    seg_name(name, sizeof(name), "conf");
    (void)kvi__sh_unlink(name, err, sizeof(err));
    snprintf(url, sizeof(url), "local:shared://?shm=%s&max_memory=96m", name);
    snprintf(bg_url, sizeof(bg_url), "local:bg://?shm=%s&max_memory=96m", name);
    pid_t bg[3];
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 3; i++)
        bg[i] = spawn_bg(bg_url, seed + (uint64_t)i);
    fflush(NULL);
    pid_t conf = fork();
    assert_true(conf >= 0);
    if (conf == 0) {
        execl(g_conformance, g_conformance, "--url", url, (char *)NULL);
        _exit(127);
    }
    int status = 0, kills = 0;
    while (waitpid(conf, &status, WNOHANG) == 0) {
        pause_us(5000 + (long)(rng_next(&seed) % 10000u));
        int i = (int)(rng_next(&seed) % 3u);
        kill(bg[i], SIGKILL);
        waitpid(bg[i], NULL, 0);
        kills++;
        bg[i] = spawn_bg(bg_url, rng_next(&seed));
    }
    for (int i = 0; i < 3; i++) {
        kill(bg[i], SIGKILL);
        waitpid(bg[i], NULL, 0);
    }
    printf("rel_shm: conformance ran beside 3 writers, %d of them killed and replaced\n", kills);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi__sh_config cfg = {.name = name, .evict = -1};
    kvi__sh *s = NULL;
    int created = 0;
    assert_int_equal(kvi__sh_open(k, &cfg, &s, &created, err, sizeof(err)), KVI_OK);
    if (kvi__sh_check(s, err, sizeof(err)) != KVI_OK)
        fail_msg("structure check after the run: %s", err);
    kvi__sh_close(s);
    kvi_free(k);
    assert_int_equal(kvi__sh_unlink(name, err, sizeof(err)), KVI_OK);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s SEGMENT_PREFIX KVI_BINARY CONFORMANCE_BINARY\n", argv[0]);
        return 2;
    }
    g_prefix = argv[1];
    g_kvi = argv[2];
    g_conformance = argv[3];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_workers_at_random_moments),
        cmocka_unit_test(test_unrelated_kvi_sees_what_a_worker_stored),
        cmocka_unit_test(test_conformance_passes_with_forked_workers_attached),
    };
    return cmocka_run_group_tests_name("rel_shm", tests, NULL, NULL);
}
