/*
 * kvi_bench.c -- kvi-bench: the local engine (and any engine id given with
 * --url) measured through the public kvi API, side by side with a baseline
 * that does the same work in the same run: a GLib GHashTable behind one
 * pthread mutex.
 *
 * Workloads on N keys (16-byte keys, 32-byte values): grow (insert N new
 * keys into an empty store, latency sampled, memory per entry measured),
 * fetch-hit, fetch-miss, store (overwrite), add (counters), mix90 (90%
 * fetch / 10% store); key choice uniform or scrambled zipfian (0.99);
 * 1 and 2 threads.  Latency is sampled on every 32nd operation so that
 * reading the clock does not dominate the cost.
 *
 * The shared local collection (local-shm: local://?shm=..., a segment
 * made for this run and removed at its end) is measured beside the
 * in-process one, with 1 process and with 2 processes: the second is a
 * forked worker that opens the segment by URL with its own context, as a
 * pre-fork server's worker does ("2p" in the th column).
 *
 *   kvi-bench [--quick] [--big] [--keys N] [--ops N] [--json] [--url URL]...
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvi/engine.h"
#include "kvi/kvi.h"

#ifdef KVI_BENCH_GLIB
#include <glib.h>
#endif
#ifdef __linux__
#include <linux/perf_event.h>
#endif

#define KEY_LEN 16u
#define KEY_STRIDE 17u /* key + NUL (the baseline hashes C strings) */
#define VAL_LEN 32u
#define SAMPLE_EVERY 32u
#define MAX_THREADS 2
#define MAX_URLS 8

enum op { OP_FETCH_HIT, OP_FETCH_MISS, OP_STORE, OP_ADD, OP_MIX90, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"fetch-hit", "fetch-miss", "store", "add", "mix90"};
enum dist { DIST_UNIFORM, DIST_ZIPF, DIST_COUNT };
static const char *const dist_names[DIST_COUNT] = {"uniform", "zipfian"};

/* ---- options and shared data ------------------------------------------- */

static struct {
    size_t keys;
    size_t ops; /* per thread per measurement */
    int json;
    int quick;
    const char *urls[MAX_URLS];
    size_t nurls;
    const char *only_op; /* NULL: all */
    int no_slow_timer;   /* kvi_set_slow_threshold(k, 0) on kvi targets */
    unsigned repeat;     /* runs per measurement, the fastest is kept */
    int no_baseline;
    int no_shm;
    const char *cost; /* --cost TARGET: the instruction-count run (bench/opcost.sh) */
} opt;

static char *keys;                               /* keys * KEY_STRIDE */
static uint32_t *picks[DIST_COUNT][MAX_THREADS]; /* ops indexes each */
static const char value32[VAL_LEN + 1] = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";

static inline const char *key_at(size_t i)
{
    return keys + i * KEY_STRIDE;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rss_bytes(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (fp) {
        if (fscanf(fp, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(fp);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t rng_next(uint64_t *s)
{
    *s += UINT64_C(0x9E3779B97F4A7C15);
    return mix64(*s);
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Scrambled zipfian picks (Gray et al., as in YCSB): rank r is drawn with
 * probability ~ 1/r^theta and then hashed, so that hot keys are spread
 * over the key space rather than clustered at its start. */
static void fill_zipf(uint32_t *out, size_t n, size_t nkeys, uint64_t seed)
{
    const double theta = 0.99;
    double zetan = 0;
    for (size_t i = 1; i <= nkeys; i++)
        zetan += 1.0 / pow((double)i, theta);
    double zeta2 = 1.0 + 1.0 / pow(2.0, theta);
    double alpha = 1.0 / (1.0 - theta);
    double eta = (1.0 - pow(2.0 / (double)nkeys, 1.0 - theta)) / (1.0 - zeta2 / zetan);
    for (size_t i = 0; i < n; i++) {
        double u = rng_unit(&seed);
        double uz = u * zetan;
        uint64_t rank;
        if (uz < 1.0)
            rank = 0;
        else if (uz < 1.0 + pow(0.5, theta))
            rank = 1;
        else
            rank = (uint64_t)((double)nkeys * pow(eta * u - eta + 1.0, alpha));
        if (rank >= nkeys)
            rank = nkeys - 1;
        out[i] = (uint32_t)(mix64(rank + 1) % nkeys);
    }
}

static void prepare_data(void)
{
    keys = malloc(opt.keys * KEY_STRIDE);
    if (!keys) {
        fprintf(stderr, "kvi-bench: no memory for %zu keys\n", opt.keys);
        exit(1);
    }
    for (size_t i = 0; i < opt.keys; i++)
        snprintf(keys + i * KEY_STRIDE, KEY_STRIDE, "k%015u", (unsigned)(i % 1000000000u));
    for (int t = 0; t < MAX_THREADS; t++) {
        uint64_t seed = 42u + (uint64_t)t;
        for (int d = 0; d < DIST_COUNT; d++) {
            picks[d][t] = malloc(opt.ops * sizeof(uint32_t));
            if (!picks[d][t]) {
                fprintf(stderr, "kvi-bench: no memory for %zu operations\n", opt.ops);
                exit(1);
            }
        }
        for (size_t i = 0; i < opt.ops; i++)
            picks[DIST_UNIFORM][t][i] = (uint32_t)(rng_next(&seed) % opt.keys);
        fill_zipf(picks[DIST_ZIPF][t], opt.ops, opt.keys, seed);
    }
}

/* ---- engines under test ---------------------------------------------------- */

/* One store under test: the same operations for kvi and for the baseline.
 * Every function returns 0 on the expected outcome. */
struct target {
    const char *name;
    void *(*create)(struct target *tg);
    void (*destroy)(void *st);
    int (*store)(void *st, const char *key, const char *val, size_t vlen);
    int (*fetch)(void *st, const char *key, int expect_hit);
    int (*add)(void *st, const char *key, int64_t delta);
    const char *url;     /* kvi targets */
    int procs;           /* 2 workers are processes on the same store (shared) */
    int rss;             /* bytes per entry from this process's RSS */
    const char *ctr_url; /* a collection of its own for the counters */
};

struct kvi_state {
    kvi *k;
    kvi_conn *c;
    kvi_conn *ctr; /* a second collection for counters */
};

static void *kvi_create(struct target *tg)
{
    struct kvi_state *s = calloc(1, sizeof(*s));
    if (!s || kvi_new(&s->k) != KVI_OK)
        goto fail;
    if (opt.no_slow_timer)
        kvi_set_slow_threshold(s->k, 0);
    if (tg->url && kvi_add_url(s->k, tg->url) != KVI_OK) {
        fprintf(stderr, "kvi-bench: %s: %s\n", tg->url, kvi_errmsg(s->k));
        goto fail;
    }
    if (kvi_conn_get(s->k, tg->name, &s->c) != KVI_OK) {
        fprintf(stderr, "kvi-bench: %s: %s\n", tg->name, kvi_errmsg(s->k));
        goto fail;
    }
    s->ctr = s->c;
    if (tg->ctr_url) {
        if (kvi_add_url(s->k, tg->ctr_url) != KVI_OK ||
            kvi_conn_get(s->k, "local:shm_ctr", &s->ctr) != KVI_OK) {
            fprintf(stderr, "kvi-bench: %s: %s\n", tg->ctr_url, kvi_errmsg(s->k));
            goto fail;
        }
    } else if (!tg->url) {
        if (kvi_add_url(s->k, "local:bench_ctr://") != KVI_OK ||
            kvi_conn_get(s->k, "local:bench_ctr", &s->ctr) != KVI_OK)
            goto fail;
    }
    return s;
fail:
    if (s)
        kvi_free(s->k);
    free(s);
    return NULL;
}

static void kvi_destroy(void *p)
{
    struct kvi_state *s = p;
    kvi_free(s->k);
    free(s);
}

static int kvi_t_store(void *p, const char *key, const char *val, size_t vlen)
{
    struct kvi_state *s = p;
    return kvi_conn_store(s->c, key, KEY_LEN, val, vlen, 0) != KVI_OK;
}

static int kvi_t_fetch(void *p, const char *key, int expect_hit)
{
    struct kvi_state *s = p;
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_conn_fetch(s->c, key, KEY_LEN, &v);
    kvi_value_free(&v);
    return st != (expect_hit ? KVI_OK : KVI_NOT_FOUND);
}

static int kvi_t_add(void *p, const char *key, int64_t delta)
{
    struct kvi_state *s = p;
    return kvi_conn_add(s->ctr, key, KEY_LEN, delta, 0, NULL) != KVI_OK;
}

#ifdef KVI_BENCH_GLIB
/* The baseline: GHashTable of C-string keys to {len, bytes} values behind
 * one mutex; a fetch copies the value out as kvi does. */
struct gval {
    uint32_t len;
    uint32_t cap;
    char data[];
};

struct ghash_state {
    pthread_mutex_t mu;
    GHashTable *h;
    GHashTable *ctr;
};

static struct gval *gval_new(const char *data, size_t len)
{
    size_t cap = len < 24 ? 24 : len;
    struct gval *v = g_malloc(sizeof(*v) + cap);
    v->len = (uint32_t)len;
    v->cap = (uint32_t)cap;
    memcpy(v->data, data, len);
    return v;
}

static void *ghash_create(struct target *tg)
{
    (void)tg;
    struct ghash_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    s->ctr = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return s;
}

static void ghash_destroy(void *p)
{
    struct ghash_state *s = p;
    g_hash_table_destroy(s->h);
    g_hash_table_destroy(s->ctr);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int ghash_store(void *p, const char *key, const char *val, size_t vlen)
{
    struct ghash_state *s = p;
    struct gval *v = gval_new(val, vlen);
    char *k = g_strndup(key, KEY_LEN);
    pthread_mutex_lock(&s->mu);
    g_hash_table_replace(s->h, k, v);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int ghash_fetch(void *p, const char *key, int expect_hit)
{
    struct ghash_state *s = p;
    char *copy = NULL;
    pthread_mutex_lock(&s->mu);
    struct gval *v = g_hash_table_lookup(s->h, key);
    if (v) {
        copy = malloc(v->len + 1u);
        if (copy) {
            memcpy(copy, v->data, v->len);
            copy[v->len] = '\0';
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(copy);
    return (v != NULL) != (expect_hit != 0);
}

static int ghash_add(void *p, const char *key, int64_t delta)
{
    struct ghash_state *s = p;
    char text[24];
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    struct gval *v = g_hash_table_lookup(s->ctr, key);
    int64_t cur = 0;
    if (v && !kvi_parse_int64(v->data, v->len, &cur)) {
        rc = 1;
    } else {
        size_t len = kvi_format_int64(cur + delta, text);
        if (v && len <= v->cap) {
            memcpy(v->data, text, len);
            v->len = (uint32_t)len;
        } else {
            g_hash_table_replace(s->ctr, g_strndup(key, KEY_LEN), gval_new(text, len));
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}
#endif

/* ---- measurements ------------------------------------------------------ */

static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

struct result {
    const char *engine;
    const char *op;
    const char *dist;
    int threads;
    size_t keys;
    double ops_per_s;
    double ns_per_op;
    uint64_t p50_ns, p99_ns, p999_ns, max_ns;
    double bytes_per_entry; /* < 0: not measured */
    uint64_t peak_rss;      /* of the process that measured this target */
    double ratio;           /* < 0: no baseline */
    int procs;              /* threads are processes */
    double instr_per_op;    /* < 0: no CPU counter */
};

static struct result *results;
static size_t nresults, capresults;

static struct result *add_result(void)
{
    if (nresults == capresults) {
        capresults = capresults ? capresults * 2 : 64;
        results = realloc(results, capresults * sizeof(*results));
        if (!results)
            exit(1);
    }
    struct result *r = &results[nresults++];
    memset(r, 0, sizeof(*r));
    r->bytes_per_entry = -1;
    r->ratio = -1;
    r->instr_per_op = -1;
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *s, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return s[i];
}

struct worker {
    struct target *tg;
    void *st;
    enum op op;
    const uint32_t *pick;
    size_t n;
    uint64_t *samples;
    size_t nsamples;
    uint64_t elapsed_ns;
    size_t failures;
    pthread_barrier_t *barrier;
    uint64_t instructions; /* retired by the loop (user space) */
    int have_instructions; /* the CPU counter could be read */
};

/* The CPU's count of instructions this thread retires in user space
 * (perf_event_open); -1 where the kernel or the machine has no such
 * counter (many VMs: then bench/opcost.sh counts them with callgrind). */
static int instr_open(void)
{
#if defined(__linux__) && defined(SYS_perf_event_open)
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.type = PERF_TYPE_HARDWARE;
    a.size = sizeof(a);
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
#else
    return -1;
#endif
}

static int instr_read(int fd, uint64_t *v)
{
    return fd >= 0 && read(fd, v, sizeof(*v)) == (ssize_t)sizeof(*v);
}

static int run_one(struct worker *w, size_t i)
{
    const char *key = key_at(w->pick[i]);
    char buf[KEY_STRIDE];
    switch (w->op) {
    case OP_FETCH_HIT:
        return w->tg->fetch(w->st, key, 1);
    case OP_FETCH_MISS:
        memcpy(buf, key, KEY_STRIDE);
        buf[0] = 'm';
        return w->tg->fetch(w->st, buf, 0);
    case OP_STORE:
        return w->tg->store(w->st, key, value32, VAL_LEN);
    case OP_ADD:
        return w->tg->add(w->st, key, 1);
    case OP_MIX90:
        if (i % 10 == 9)
            return w->tg->store(w->st, key, value32, VAL_LEN);
        return w->tg->fetch(w->st, key, 1);
    default:
        return 1;
    }
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    if (w->barrier)
        pthread_barrier_wait(w->barrier);
    int ifd = instr_open();
    uint64_t i0 = 0, i1 = 0;
    int counted = instr_read(ifd, &i0);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < w->n; i++) {
        if (i % SAMPLE_EVERY == 0) {
            uint64_t a = now_ns();
            w->failures += (size_t)run_one(w, i);
            w->samples[w->nsamples++] = now_ns() - a;
        } else {
            w->failures += (size_t)run_one(w, i);
        }
    }
    w->elapsed_ns = now_ns() - t0;
    w->have_instructions = counted && instr_read(ifd, &i1);
    w->instructions = w->have_instructions ? i1 - i0 : 0;
    if (ifd >= 0)
        close(ifd);
    return NULL;
}

static void finish(struct result *r, uint64_t *samples, size_t ns, double total_ops,
                   uint64_t wall_ns)
{
    qsort(samples, ns, sizeof(*samples), cmp_u64);
    r->ops_per_s = total_ops / ((double)wall_ns / 1e9);
    r->ns_per_op = (double)wall_ns / total_ops * r->threads;
    r->p50_ns = pct(samples, ns, 0.50);
    r->p99_ns = pct(samples, ns, 0.99);
    r->p999_ns = pct(samples, ns, 0.999);
    r->max_ns = ns ? samples[ns - 1] : 0;
}

/* pipe() and fork() or exit: the bench cannot go on without them. */
static void pipe_or_exit(int fds[2])
{
    if (pipe(fds) != 0) {
        perror("kvi-bench: pipe");
        exit(1);
    }
}

static pid_t fork_or_exit(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("kvi-bench: fork");
        exit(1);
    }
    return pid;
}

/* The second worker of a 2-process measurement: a child with its own
 * context on the same segment.  It reports ready, waits for go, runs, and
 * sends back elapsed time, failures and samples. */
static pid_t start_worker_process(struct target *tg, enum op op, const uint32_t *pick, int *to,
                                  int *from)
{
    int down[2], up[2];
    pipe_or_exit(down);
    pipe_or_exit(up);
    pid_t pid = fork_or_exit();
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        void *st = tg->create(tg);
        size_t per_sample = opt.ops / SAMPLE_EVERY + 1;
        uint64_t *samples = malloc(per_sample * sizeof(uint64_t));
        char c = st && samples ? 'r' : 'x';
        if (write(up[1], &c, 1) != 1 || c != 'r' || read(down[0], &c, 1) != 1)
            _exit(1);
        struct worker w = {tg, st, op, pick, opt.ops, samples, 0, 0, 0, NULL, 0, 0};
        worker_main(&w);
        if (write(up[1], &w.elapsed_ns, sizeof(w.elapsed_ns)) < 0 ||
            write(up[1], &w.failures, sizeof(w.failures)) < 0 ||
            write(up[1], &w.nsamples, sizeof(w.nsamples)) < 0 ||
            write(up[1], samples, w.nsamples * sizeof(uint64_t)) < 0)
            _exit(1);
        tg->destroy(st);
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    char c = 0;
    if (read_all(up[0], &c, 1) != 0 || c != 'r') {
        fprintf(stderr, "kvi-bench: %s: the worker process could not open the store\n", tg->name);
        exit(1);
    }
    *to = down[1];
    *from = up[0];
    return pid;
}

static void measure_procs(struct target *tg, void *st, enum op op, enum dist d, struct result *r)
{
    size_t per_sample = opt.ops / SAMPLE_EVERY + 1;
    uint64_t *samples = malloc(2u * per_sample * sizeof(uint64_t));
    if (!samples)
        exit(1);
    int to = -1, from = -1;
    pid_t pid = start_worker_process(tg, op, picks[d][1], &to, &from);
    struct worker w = {tg, st, op, picks[d][0], opt.ops, samples, 0, 0, 0, NULL, 0, 0};
    if (write(to, "g", 1) != 1)
        exit(1);
    worker_main(&w);
    uint64_t elapsed = 0;
    size_t failures = 0, n = 0;
    if (read_all(from, &elapsed, sizeof(elapsed)) != 0 ||
        read_all(from, &failures, sizeof(failures)) != 0 || read_all(from, &n, sizeof(n)) != 0 ||
        n > per_sample || read_all(from, samples + w.nsamples, n * sizeof(uint64_t)) != 0) {
        fprintf(stderr, "kvi-bench: %s: the worker process failed\n", tg->name);
        exit(1);
    }
    close(to);
    close(from);
    waitpid(pid, NULL, 0);
    failures += w.failures;
    if (failures && op != OP_ADD)
        fprintf(stderr, "kvi-bench: %s %s: %zu unexpected outcomes\n", tg->name, op_names[op],
                failures);
    r->engine = tg->name;
    r->op = op_names[op];
    r->dist = dist_names[d];
    r->threads = 2;
    r->procs = 1;
    r->keys = opt.keys;
    if (w.have_instructions)
        r->instr_per_op = (double)w.instructions / (double)opt.ops;
    finish(r, samples, w.nsamples + n, 2.0 * (double)opt.ops,
           elapsed > w.elapsed_ns ? elapsed : w.elapsed_ns);
    free(samples);
}

static void measure_once(struct target *tg, void *st, enum op op, enum dist d, int threads,
                         struct result *r)
{
    if (tg->procs && threads == 2) {
        measure_procs(tg, st, op, d, r);
        return;
    }
    struct worker w[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    size_t per_sample = opt.ops / SAMPLE_EVERY + 1;
    uint64_t *samples = malloc((size_t)threads * per_sample * sizeof(uint64_t));
    if (!samples)
        exit(1);
    for (int t = 0; t < threads; t++) {
        w[t] = (struct worker){tg, st, op, picks[d][t], opt.ops, samples + (size_t)t * per_sample,
                               0,  0,  0,  &barrier,    0,       0};
        pthread_create(&th[t], NULL, worker_main, &w[t]);
    }
    uint64_t wall = 0;
    size_t failures = 0, ns = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        if (w[t].elapsed_ns > wall)
            wall = w[t].elapsed_ns;
        failures += w[t].failures;
        /* Compact the samples of all threads into one run. */
        memmove(samples + ns, w[t].samples, w[t].nsamples * sizeof(uint64_t));
        ns += w[t].nsamples;
    }
    pthread_barrier_destroy(&barrier);
    if (failures && op != OP_ADD)
        fprintf(stderr, "kvi-bench: %s %s: %zu unexpected outcomes\n", tg->name, op_names[op],
                failures);
    r->engine = tg->name;
    r->op = op_names[op];
    r->dist = dist_names[d];
    r->threads = threads;
    r->keys = opt.keys;
    uint64_t instr = 0;
    int have = 1;
    for (int t = 0; t < threads; t++) {
        have = have && w[t].have_instructions;
        instr += w[t].instructions;
    }
    if (have)
        r->instr_per_op = (double)instr / ((double)opt.ops * threads);
    finish(r, samples, ns, (double)opt.ops * threads, wall);
    free(samples);
}

/* Runs a measurement opt.repeat times and keeps the fastest run: on a
 * shared machine the other runs mostly measure the neighbours. */
static void measure(struct target *tg, void *st, enum op op, enum dist d, int threads)
{
    struct result *best = add_result();
    for (unsigned i = 0; i < opt.repeat; i++) {
        struct result r = *best;
        measure_once(tg, st, op, d, threads, &r);
        if (i == 0 || r.ops_per_s > best->ops_per_s)
            *best = r;
    }
}

/* Inserts every key into an empty store in random order, sampling the
 * latency of every op, and measures resident memory per entry. */
static void measure_grow(struct target *tg, void *st)
{
    uint64_t *samples = malloc(opt.keys * sizeof(uint64_t));
    uint32_t *order = malloc(opt.keys * sizeof(uint32_t));
    if (!samples || !order)
        exit(1);
    for (size_t i = 0; i < opt.keys; i++)
        order[i] = (uint32_t)i;
    uint64_t seed = 7;
    for (size_t i = opt.keys - 1; i > 0; i--) {
        size_t j = (size_t)(rng_next(&seed) % (i + 1));
        uint32_t x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    /* Touch the sample pages now so that they are not counted as the
     * store's memory (non-zero: malloc+memset(0) may become calloc). */
    memset(samples, 0xff, opt.keys * sizeof(uint64_t));
    uint64_t rss0 = rss_bytes();
    uint64_t t0 = now_ns();
    size_t failures = 0;
    for (size_t i = 0; i < opt.keys; i++) {
        uint64_t a = now_ns();
        failures += (size_t)tg->store(st, key_at(order[i]), value32, VAL_LEN);
        samples[i] = now_ns() - a;
    }
    uint64_t wall = now_ns() - t0;
    uint64_t rss1 = rss_bytes();
    if (failures)
        fprintf(stderr, "kvi-bench: %s grow: %zu failed stores\n", tg->name, failures);
    struct result *r = add_result();
    r->engine = tg->name;
    r->op = "grow";
    r->dist = "shuffled";
    r->threads = 1;
    r->keys = opt.keys;
    finish(r, samples, opt.keys, (double)opt.keys, wall);
    /* Only an in-process store's memory shows in this process. */
    if (tg->rss)
        r->bytes_per_entry = (double)(rss1 > rss0 ? rss1 - rss0 : 0) / (double)opt.keys;
    free(samples);
    free(order);
}

static void run_target(struct target *tg)
{
    void *st = tg->create(tg);
    if (!st) {
        fprintf(stderr, "kvi-bench: skipping %s\n", tg->name);
        return;
    }
    measure_grow(tg, st);
    for (int op = 0; op < OP_COUNT; op++)
        for (int d = 0; d < DIST_COUNT && (!opt.only_op || !strcmp(opt.only_op, op_names[op])); d++)
            for (int th = 1; th <= MAX_THREADS; th++)
                measure(tg, st, (enum op)op, (enum dist)d, th);
    tg->destroy(st);
}

/* Kept out of line and out of interprocedural analysis so that callgrind
 * counts each cost function on its own (clang has no noipa: noinline). */
#if defined(__clang__)
#define KB_NOIPA __attribute__((noinline))
#else
#define KB_NOIPA __attribute__((noinline, noipa))
#endif

/* --cost: one target, one thread, no clock: stores every key, then runs
 * opt.ops fetches that hit, opt.ops that miss and opt.ops overwrites, each
 * through a function of its own that callgrind counts (bench/opcost.sh:
 * valgrind --tool=callgrind --toggle-collect=cost_*; instructions per
 * operation = the function's inclusive count / opt.ops). */
KB_NOIPA static int cost_fetch_hit(struct target *tg, void *st, const char *key)
{
    return tg->fetch(st, key, 1);
}

KB_NOIPA static int cost_fetch_miss(struct target *tg, void *st, const char *key)
{
    return tg->fetch(st, key, 0);
}

KB_NOIPA static int cost_store(struct target *tg, void *st, const char *key)
{
    return tg->store(st, key, value32, VAL_LEN);
}

static int run_cost(struct target *tg)
{
    void *st = tg->create(tg);
    if (!st)
        return 1;
    size_t failures = 0;
    for (size_t i = 0; i < opt.keys; i++)
        failures += (size_t)tg->store(st, key_at(i), value32, VAL_LEN);
    const uint32_t *pick = picks[DIST_UNIFORM][0];
    for (size_t i = 0; i < opt.ops; i++)
        failures += (size_t)cost_fetch_hit(tg, st, key_at(pick[i]));
    for (size_t i = 0; i < opt.ops; i++) {
        char buf[KEY_STRIDE];
        memcpy(buf, key_at(pick[i]), KEY_STRIDE);
        buf[0] = 'm';
        failures += (size_t)cost_fetch_miss(tg, st, buf);
    }
    for (size_t i = 0; i < opt.ops; i++)
        failures += (size_t)cost_store(tg, st, key_at(pick[i]));
    tg->destroy(st);
    printf("cost %s keys %zu ops %zu failures %zu\n", tg->name, opt.keys, opt.ops, failures);
    return failures != 0;
}

/* Each target runs in a child process of its own, so that no store
 * inherits another's heap (fragmentation, freed chunks) and its memory and
 * peak RSS are its own.  The results come back through a pipe; their
 * string fields point into memory the child shares with this process. */
static void bench_target(struct target *tg)
{
    int fds[2];
    pipe_or_exit(fds);
    pid_t pid = fork_or_exit();
    if (pid == 0) {
        close(fds[0]);
        nresults = 0;
        run_target(tg);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        for (size_t i = 0; i < nresults; i++)
            results[i].peak_rss = (uint64_t)ru.ru_maxrss * 1024u;
        FILE *fp = fdopen(fds[1], "w");
        if (!fp || fwrite(&nresults, sizeof(nresults), 1, fp) != 1 ||
            (nresults && fwrite(results, sizeof(*results), nresults, fp) != nresults))
            _exit(1);
        fclose(fp);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    if (read_all(fds[0], &n, sizeof(n)) == 0) {
        for (size_t i = 0; i < n; i++) {
            struct result r;
            if (read_all(fds[0], &r, sizeof(r)) != 0)
                break;
            *add_result() = r;
        }
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "kvi-bench: the run of %s failed\n", tg->name);
}

static void compute_ratios(void)
{
    for (size_t i = 0; i < nresults; i++) {
        struct result *r = &results[i];
        for (size_t j = 0; j < nresults; j++) {
            struct result *b = &results[j];
            if (strcmp(b->engine, "ghash+mutex") == 0 && strcmp(b->op, r->op) == 0 &&
                strcmp(b->dist, r->dist) == 0 && b->threads == r->threads)
                r->ratio = r->ops_per_s / b->ops_per_s;
        }
    }
}

static void print_json(const struct result *r)
{
    printf("{\"engine\":\"%s\",\"op\":\"%s\",\"dist\":\"%s\",\"threads\":%d,"
           "\"processes\":%s,\"keys\":%zu,"
           "\"ops_per_s\":%.0f,\"ns_per_op\":%.1f,\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64
           ",\"p999_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 ",\"peak_rss\":%" PRIu64 ",",
           r->engine, r->op, r->dist, r->threads, r->procs ? "true" : "false", r->keys,
           r->ops_per_s, r->ns_per_op, r->p50_ns, r->p99_ns, r->p999_ns, r->max_ns, r->peak_rss);
    if (r->bytes_per_entry >= 0)
        printf("\"bytes_per_entry\":%.1f,", r->bytes_per_entry);
    else
        printf("\"bytes_per_entry\":null,");
    if (r->instr_per_op >= 0)
        printf("\"instructions_per_op\":%.0f,", r->instr_per_op);
    else
        printf("\"instructions_per_op\":null,");
    if (r->ratio >= 0)
        printf("\"ratio_vs_baseline\":%.2f}\n", r->ratio);
    else
        printf("\"ratio_vs_baseline\":null}\n");
}

static void print_table(void)
{
    printf("%-16s %-10s %-8s %2s %9s %12s %8s %8s %8s %9s %10s %9s %8s %7s\n", "engine", "op",
           "dist", "th", "keys", "ops/s", "ns/op", "p50", "p99", "p99.9", "max", "B/entry",
           "vs base", "Ir/op");
    for (size_t i = 0; i < nresults; i++) {
        const struct result *r = &results[i];
        char bpe[32] = "-", ratio[32] = "-", ir[32] = "-";
        if (r->instr_per_op >= 0)
            snprintf(ir, sizeof(ir), "%.0f", r->instr_per_op);
        if (r->bytes_per_entry >= 0)
            snprintf(bpe, sizeof(bpe), "%.1f", r->bytes_per_entry);
        if (r->ratio >= 0)
            snprintf(ratio, sizeof(ratio), "%.2fx", r->ratio);
        char th[8];
        snprintf(th, sizeof(th), "%d%s", r->threads, r->procs ? "p" : "");
        printf("%-16s %-10s %-8s %2s %9zu %12.0f %8.1f %8" PRIu64 " %8" PRIu64 " %9" PRIu64
               " %10" PRIu64 " %9s %8s %7s\n",
               r->engine, r->op, r->dist, th, r->keys, r->ops_per_s, r->ns_per_op, r->p50_ns,
               r->p99_ns, r->p999_ns, r->max_ns, bpe, ratio, ir);
    }
    printf("\npeak RSS:");
    for (size_t i = 0; i < nresults; i++)
        if (i == 0 || strcmp(results[i].engine, results[i - 1].engine) != 0)
            printf(" %s %.1f MiB;", results[i].engine,
                   (double)results[i].peak_rss / (1024.0 * 1024.0));
    printf(" latencies in ns (every %uth op sampled, every op for grow); "
           "B/entry = resident bytes per entry after grow, key %u + value %u bytes included; "
           "Ir/op = instructions per op from the CPU counter (bench loop included), - where "
           "none (count them with bench/opcost.sh)\n",
           SAMPLE_EVERY, KEY_LEN, VAL_LEN);
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: kvi-bench [--quick] [--big] [--keys N] [--ops N] [--json] [--url URL]...\n"
                "                 [--op OP] [--repeat N] [--no-baseline] [--no-shm]\n"
                "                 [--no-slow-timer] [--cost TARGET]\n"
                "  --quick    20000 keys, 100000 ops: a smoke run of a few seconds\n"
                "  --big      10000000 keys instead of 1000000\n"
                "  --keys N   number of keys;  --ops N  operations per thread per measurement\n"
                "  --json     one JSON object per measurement instead of the table\n"
                "  --url URL  also measure this engine id through kvi (repeatable)\n"
                "  --repeat N run each measurement N times and keep the fastest run\n"
                "  --op OP    only grow and OP (fetch-hit, fetch-miss, store, add, mix90)\n"
                "  --no-baseline  leave the GHashTable baseline out\n"
                "  --no-shm   leave the shared collection (local:shm, 1 and 2 processes) out\n"
                "  --no-slow-timer  kvi_set_slow_threshold(0): kvi does not time each call\n"
                "  --cost T   instruction-count run of target T (ghash+mutex, local, local:shm)\n"
                "             for callgrind: see bench/opcost.sh\n");
}

int main(int argc, char **argv)
{
    opt.keys = 1000000;
    opt.ops = 2000000;
    opt.repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
            opt.keys = 20000;
            opt.ops = 100000;
        } else if (strcmp(a, "--big") == 0) {
            opt.keys = 10000000;
        } else if (strcmp(a, "--json") == 0) {
            opt.json = 1;
        } else if ((strcmp(a, "--keys") == 0 || strcmp(a, "--ops") == 0) && i + 1 < argc) {
            char *end;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (*end || v == 0 || v > UINT32_MAX) {
                fprintf(stderr, "kvi-bench: bad number '%s'\n", argv[i]);
                return 2;
            }
            if (a[2] == 'k')
                opt.keys = (size_t)v;
            else
                opt.ops = (size_t)v;
        } else if (strcmp(a, "--url") == 0 && i + 1 < argc) {
            if (opt.nurls == MAX_URLS) {
                fprintf(stderr, "kvi-bench: at most %d --url\n", MAX_URLS);
                return 2;
            }
            opt.urls[opt.nurls++] = argv[++i];
        } else if (strcmp(a, "--repeat") == 0 && i + 1 < argc) {
            opt.repeat = (unsigned)strtoul(argv[++i], NULL, 10);
            if (opt.repeat < 1 || opt.repeat > 100) {
                fprintf(stderr, "kvi-bench: --repeat takes 1..100\n");
                return 2;
            }
        } else if (strcmp(a, "--op") == 0 && i + 1 < argc) {
            opt.only_op = argv[++i];
        } else if (strcmp(a, "--no-slow-timer") == 0) {
            opt.no_slow_timer = 1;
        } else if (strcmp(a, "--no-baseline") == 0) {
            opt.no_baseline = 1;
        } else if (strcmp(a, "--no-shm") == 0) {
            opt.no_shm = 1;
        } else if (strcmp(a, "--cost") == 0 && i + 1 < argc) {
            opt.cost = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    prepare_data();

    struct target local = {"local",   kvi_create, kvi_destroy, kvi_t_store, kvi_t_fetch,
                           kvi_t_add, NULL,       0,           1,           NULL};
    /* The shared collection, sized for the keys and the counters (its
     * memory is fixed), in a segment of this run. */
    char shm_name[64], shm_url[160], ctr_url[160];
    snprintf(shm_name, sizeof(shm_name), "kvi-bench-%ld", (long)getpid());
    size_t shm_mib = opt.keys * 128u / (1024u * 1024u) + 16u;
    snprintf(shm_url, sizeof(shm_url), "local:shm://?shm=%s&max_memory=%zum", shm_name, shm_mib);
    snprintf(ctr_url, sizeof(ctr_url), "local:shm_ctr://?shm=%s-ctr&max_memory=%zum", shm_name,
             shm_mib);
    struct target shared = {"local:shm", kvi_create, kvi_destroy, kvi_t_store, kvi_t_fetch,
                            kvi_t_add,   shm_url,    1,           1,           ctr_url};
#ifdef KVI_BENCH_GLIB
    struct target base = {
        "ghash+mutex", ghash_create, ghash_destroy, ghash_store, ghash_fetch, ghash_add, NULL, 0, 1,
        NULL};
    if (!opt.no_baseline && !opt.cost)
        bench_target(&base);
#else
    fprintf(stderr, "kvi-bench: built without GLib: no baseline, ratios omitted\n");
#endif
    if (opt.cost) {
        struct target *tg = !strcmp(opt.cost, "local")       ? &local
                            : !strcmp(opt.cost, "local:shm") ? &shared
#ifdef KVI_BENCH_GLIB
                            : !strcmp(opt.cost, "ghash+mutex") ? &base
#endif
                                                               : NULL;
        if (!tg) {
            fprintf(stderr, "kvi-bench: --cost takes local, local:shm or ghash+mutex\n");
            return 2;
        }
        int rc = run_cost(tg);
        char rm[160];
        snprintf(rm, sizeof(rm), "/dev/shm/kvi.%s", shm_name);
        unlink(rm);
        snprintf(rm, sizeof(rm), "/dev/shm/kvi.%s-ctr", shm_name);
        unlink(rm);
        return rc;
    }
    bench_target(&local);
    if (!opt.no_shm) {
        bench_target(&shared);
        char rm[160];
        snprintf(rm, sizeof(rm), "/dev/shm/kvi.%s", shm_name);
        unlink(rm);
        snprintf(rm, sizeof(rm), "/dev/shm/kvi.%s-ctr", shm_name);
        unlink(rm);
    }
    char ids[MAX_URLS][KVI_MAX_ID_LEN + 1];
    for (size_t i = 0; i < opt.nurls; i++) {
        kvi_url *u = NULL;
        char err[256];
        if (kvi_url_parse(opt.urls[i], &u, err, sizeof(err)) != KVI_OK) {
            fprintf(stderr, "kvi-bench: %s\n", err);
            return 2;
        }
        snprintf(ids[i], sizeof(ids[i]), "%s", u->id);
        kvi_url_free(u);
        struct target tg = {ids[i],    kvi_create,  kvi_destroy, kvi_t_store, kvi_t_fetch,
                            kvi_t_add, opt.urls[i], 0,           0,           NULL};
        bench_target(&tg);
    }
    compute_ratios();
    if (opt.json)
        for (size_t i = 0; i < nresults; i++)
            print_json(&results[i]);
    else
        print_table();
    return 0;
}
