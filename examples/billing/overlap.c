/*
 * overlap.c -- billing --overlap (see overlap.h).
 *
 * Each proxy (worker) keeps `inflight` calls going at once and starts a new
 * one whenever one ends, so a user has many calls in flight across the
 * proxies.  Time is simulated: one pass over a proxy's calls is one second
 * of each call.  A call costs cost_per_s (1..3) per started second and lasts
 * 1..MAX_DURATION_S seconds.
 *
 * check:   INVITE reads the credit and admits when it is > 1; BYE subtracts
 *          duration x cost.  Overlapping calls all pass the check.
 * reserve: INVITE reserves QUOTA_S seconds (bounded sub, floor 0; refused =
 *          403); when a call has used up its reservation it reserves the next
 *          QUOTA_S seconds or, refused, is ended right there; BYE gives back
 *          what was reserved but not used.
 *
 * Every change goes through one atomic store call that returns the new
 * credit, so the lowest of the values returned is the lowest credit the
 * user ever had.  A write whose outcome is unknown (timeout, I/O or
 * protocol error after sending) is counted with its amount and never
 * retried; the end check then allows exactly that much slack.
 */
#include "overlap.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "billing_logic.h"

#define QUOTA_S 3
#define MAX_DURATION_S 12
#define MAX_WORKERS 64
#define MAX_INFLIGHT 256

/* What one proxy saw with one logic; in shared memory (processes). */
typedef struct ov_result {
    uint64_t accepted, rejected, cut_off, completed, errors, unknown;
    int64_t lowest;
    int failed;
    int64_t per_user[]; /* 3 x users: acknowledged net charge, unknown subs, unknown adds */
} ov_result;

typedef struct ov_call {
    int user;
    int64_t cost;
    int duration, elapsed, covered;
    int64_t reserved;
} ov_call;

typedef struct ov_run {
    const overlap_opts *o;
    unsigned logic;
    char prefix[128];
    unsigned char *results;
    size_t result_size;
} ov_run;

static ov_result *result_of(const ov_run *r, int w)
{
    return (ov_result *)(void *)(r->results + (size_t)w * r->result_size);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static void credit_key(const ov_run *r, int user, char *buf, size_t len)
{
    snprintf(buf, len, "%scredit_u%05d", r->prefix, user);
}

/* A write failed: did it perhaps change the credit? */
static int outcome_unknown(kvi_status st)
{
    return st == KVI_E_TIMEOUT || st == KVI_E_IO || st == KVI_E_PROTOCOL || st == KVI_E_BACKEND;
}

typedef struct ov_worker {
    const ov_run *run;
    int w;
    kvi *k;
    kvi_conn *c;
    ov_result *res;
} ov_worker;

static void seen(ov_worker *x, int64_t v)
{
    if (v < x->res->lowest)
        x->res->lowest = v;
}

/* A write of `amount` (taken from the credit when sub, else given back)
 * that did not succeed; st is its status. */
static void write_failed(ov_worker *x, int user, kvi_status st, int sub, int64_t amount)
{
    int users = x->run->o->users;
    if (outcome_unknown(st)) {
        x->res->unknown++;
        x->res->per_user[(sub ? 1 : 2) * users + user] += amount;
    } else {
        x->res->errors++;
    }
    if (x->res->errors + x->res->unknown <= 5)
        fprintf(stderr, "billing: proxy %d: %s: %s%s\n", x->w, kvi_strerror(st), kvi_errmsg(x->k),
                outcome_unknown(st) ? " (outcome unknown; not retried)" : "");
}

static void charged(ov_worker *x, int user, int64_t amount)
{
    x->res->per_user[user] += amount;
}

/* INVITE of call i; 1 when the call is set up. */
static int invite(ov_worker *x, ov_call *call, uint64_t i)
{
    const ov_run *r = x->run;
    uint64_t h = mix(r->o->seed * 1000003u + i);
    call->user = (int)(h % (uint64_t)r->o->users);
    call->cost = 1 + (int64_t)((h >> 20) % 3u);
    call->duration = 1 + (int)((h >> 28) % MAX_DURATION_S);
    call->elapsed = 0;
    call->covered = 0;
    call->reserved = 0;
    char key[160];
    credit_key(r, call->user, key, sizeof key);
    int64_t v = 0;
    if (r->logic == OVERLAP_LOGIC_CHECK) {
        int code = billing_check_invite(x->c, key, &v);
        if (code < 0) {
            x->res->errors++;
            return 0;
        }
        seen(x, v);
        if (code != BILLING_OK) {
            x->res->rejected++;
            return 0;
        }
        x->res->accepted++;
        return 1;
    }
    int64_t quota = call->cost * QUOTA_S;
    kvi_status st = billing_reserve(x->c, key, quota, &v);
    if (st == KVI_OUT_OF_BOUNDS) {
        seen(x, v);
        x->res->rejected++; /* 403 Not enough credit */
        return 0;
    }
    if (st != KVI_OK) {
        write_failed(x, call->user, st, 1, quota);
        return 0; /* not set up (the reservation may or may not stand) */
    }
    seen(x, v);
    charged(x, call->user, quota);
    call->reserved = quota;
    call->covered = QUOTA_S;
    x->res->accepted++;
    return 1;
}

/* BYE: the call ends after call->elapsed seconds. */
static void bye(ov_worker *x, ov_call *call)
{
    const ov_run *r = x->run;
    char key[160];
    credit_key(r, call->user, key, sizeof key);
    int64_t used = call->cost * call->elapsed;
    int64_t v = 0;
    kvi_status st;
    if (r->logic == OVERLAP_LOGIC_CHECK) {
        st = billing_check_bye(x->c, key, used, &v);
        if (st == KVI_OK) {
            seen(x, v);
            charged(x, call->user, used);
        } else {
            write_failed(x, call->user, st, 1, used);
        }
    } else {
        int64_t back = call->reserved - used;
        st = billing_settle(x->c, key, call->reserved, used, &v);
        if (st == KVI_OK && back > 0) {
            seen(x, v);
            charged(x, call->user, -back);
        } else if (st != KVI_OK) {
            write_failed(x, call->user, st, 0, back);
        }
    }
    x->res->completed++;
}

/* One second of a call; 0 when the call ended. */
static int tick(ov_worker *x, ov_call *call)
{
    call->elapsed++;
    if (call->elapsed >= call->duration) {
        bye(x, call);
        return 0;
    }
    if (x->run->logic != OVERLAP_LOGIC_RESERVE || call->elapsed < call->covered)
        return 1;
    char key[160];
    credit_key(x->run, call->user, key, sizeof key);
    int64_t quota = call->cost * QUOTA_S, v = 0;
    kvi_status st = billing_reserve(x->c, key, quota, &v);
    if (st == KVI_OK) {
        seen(x, v);
        charged(x, call->user, quota);
        call->reserved += quota;
        call->covered += QUOTA_S;
        return 1;
    }
    if (st == KVI_OUT_OF_BOUNDS)
        seen(x, v);
    else
        write_failed(x, call->user, st, 1, quota);
    /* No more credit: the proxy ends the call now (BYE to both sides). */
    x->res->cut_off++;
    bye(x, call);
    return 0;
}

static void run_proxy(ov_worker *x)
{
    const overlap_opts *o = x->run->o;
    ov_call calls[MAX_INFLIGHT];
    int active[MAX_INFLIGHT] = {0};
    /* Proxy w handles calls w, w + workers, ...: each INVITE lands on one
     * proxy, as DNS round robin would spread them. */
    uint64_t next = (uint64_t)x->w, nactive = 0;
    for (;;) {
        for (int s = 0; s < o->inflight; s++) {
            while (!active[s] && next < (uint64_t)o->calls) {
                active[s] = invite(x, &calls[s], next);
                nactive += (uint64_t)active[s];
                next += (uint64_t)o->workers;
            }
        }
        if (nactive == 0)
            break;
        for (int s = 0; s < o->inflight; s++) {
            if (active[s] && !tick(x, &calls[s])) {
                active[s] = 0;
                nactive--;
            }
        }
    }
}

static void *proxy_thread(void *p)
{
    run_proxy(p);
    return NULL;
}

/* Runs every proxy with run->logic; 0 when all of them ran. */
static int run_proxies(ov_run *run, kvi *k, kvi_conn *c, int use_processes)
{
    const overlap_opts *o = run->o;
    for (int w = 0; w < o->workers; w++)
        result_of(run, w)->lowest = o->credit;
    if (use_processes) {
        pid_t pids[MAX_WORKERS];
        fflush(NULL);
        for (int w = 0; w < o->workers; w++) {
            pids[w] = fork();
            if (pids[w] < 0) {
                perror("billing: fork");
                for (int v = 0; v < w; v++)
                    waitpid(pids[v], NULL, 0);
                return 1;
            }
            if (pids[w] == 0) {
                ov_worker x = {run, w, NULL, NULL, result_of(run, w)};
                if (billing_open(o->url, o->id, &x.k, &x.c) != KVI_OK)
                    _exit(1);
                run_proxy(&x);
                kvi_free(x.k);
                _exit(0);
            }
        }
        int failed = 0;
        for (int w = 0; w < o->workers; w++) {
            int status = 0;
            waitpid(pids[w], &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failed = result_of(run, w)->failed = 1;
        }
        return failed;
    }
    pthread_t th[MAX_WORKERS];
    ov_worker xs[MAX_WORKERS];
    for (int w = 0; w < o->workers; w++) {
        xs[w] = (ov_worker){run, w, k, c, result_of(run, w)};
        if (pthread_create(&th[w], NULL, proxy_thread, &xs[w]) != 0) {
            for (int v = 0; v < w; v++)
                pthread_join(th[v], NULL);
            return 1;
        }
    }
    for (int w = 0; w < o->workers; w++)
        pthread_join(th[w], NULL);
    return 0;
}

static const char *logic_name(unsigned logic)
{
    return logic == OVERLAP_LOGIC_CHECK ? "check-at-INVITE" : "reserve";
}

/* Sets the credits, runs the proxies, checks and prints one logic; returns
 * 1 when a check failed. */
static int run_logic(const overlap_opts *o, unsigned logic, kvi *k, kvi_conn *c,
                     int use_processes)
{
    ov_run run = {o, logic, "", NULL, 0};
    snprintf(run.prefix, sizeof run.prefix, "%s%s:", o->prefix,
             logic == OVERLAP_LOGIC_CHECK ? "chk" : "rsv");
    run.result_size =
        (sizeof(ov_result) + 3u * (size_t)o->users * sizeof(int64_t) + 63u) & ~(size_t)63u;
    size_t total = run.result_size * (size_t)o->workers;
    run.results = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (run.results == MAP_FAILED) {
        perror("billing: mmap");
        return 1;
    }
    char key[160], user[16];
    int failed = 0;
    for (int u = 0; u < o->users && !failed; u++) {
        snprintf(user, sizeof user, "u%05d", u);
        kvi_status st = billing_set_credit(c, run.prefix, user, o->credit);
        if (st != KVI_OK) {
            fprintf(stderr, "billing: set credit: %s: %s\n", kvi_strerror(st), kvi_errmsg(k));
            failed = 1;
        }
    }
    if (!failed)
        failed = run_proxies(&run, k, c, use_processes);

    ov_result sum = {0};
    sum.lowest = o->credit;
    for (int w = 0; w < o->workers; w++) {
        const ov_result *r = result_of(&run, w);
        sum.accepted += r->accepted;
        sum.rejected += r->rejected;
        sum.cut_off += r->cut_off;
        sum.completed += r->completed;
        sum.errors += r->errors;
        sum.unknown += r->unknown;
        if (r->lowest < sum.lowest)
            sum.lowest = r->lowest;
        failed |= r->failed;
    }
    /* Every credit = start - acknowledged charges (+ the slack of unknown
     * outcomes); the final credits count as observed too. */
    int differ = 0;
    for (int u = 0; u < o->users; u++) {
        int64_t net = 0, unk_sub = 0, unk_add = 0;
        for (int w = 0; w < o->workers; w++) {
            const ov_result *r = result_of(&run, w);
            net += r->per_user[u];
            unk_sub += r->per_user[o->users + u];
            unk_add += r->per_user[2 * o->users + u];
        }
        credit_key(&run, u, key, sizeof key);
        int64_t got = 0, want = o->credit - net;
        kvi_status st = kvi_conn_counter_fetch(c, key, strlen(key), &got);
        if (st == KVI_OK && got < sum.lowest)
            sum.lowest = got;
        if (st != KVI_OK || got < want - unk_sub || got > want + unk_add) {
            if (differ++ < 5)
                printf("%s: credit of u%05d is %" PRId64 " (%s), want %" PRId64 "\n",
                       logic_name(logic), u, got, kvi_strerror(st), want);
        }
        kvi_conn_remove(c, key, strlen(key));
    }
    printf("%-16s accepted %6" PRIu64 "  rejected (403) %6" PRIu64 "  cut off %5" PRIu64
           "  errors %" PRIu64 "  unknown outcome %" PRIu64 "\n",
           logic_name(logic), sum.accepted, sum.rejected, sum.cut_off, sum.errors, sum.unknown);
    printf("%s: lowest credit %" PRId64 ", below 0: %s, credits exact: %s\n", logic_name(logic),
           sum.lowest, sum.lowest < 0 ? "yes" : "no",
           differ || failed ? "no" : (sum.unknown ? "within unknown outcomes" : "yes"));
    munmap(run.results, total);
    if (differ || failed)
        return 1;
    return logic == OVERLAP_LOGIC_RESERVE && sum.lowest < 0;
}

int overlap_run(const overlap_opts *o)
{
    if (o->workers > MAX_WORKERS || o->inflight > MAX_INFLIGHT) {
        fprintf(stderr, "billing: at most %d workers and %d calls in flight\n", MAX_WORKERS,
                MAX_INFLIGHT);
        return 2;
    }
    kvi *k = NULL;
    kvi_conn *c = NULL;
    if (billing_open(o->url, o->id, &k, &c) != KVI_OK) {
        kvi_free(k);
        return 1;
    }
    /* Proxies share the store: processes when it is shared between
     * processes, else threads of this one. */
    int use_processes = (kvi_conn_caps(c) & KVI_CAP_SHARED) != 0;
    printf("billing --overlap on '%s': %d %s x %d calls in flight, %d users x credit %" PRId64
           ", %d calls per logic, reservations of %d s\n",
           o->id, o->workers, use_processes ? "processes" : "threads", o->inflight, o->users,
           o->credit, o->calls, QUOTA_S);
    fflush(stdout);
    int rc = 0, skipped = 0;
    if (o->logics & OVERLAP_LOGIC_CHECK)
        rc |= run_logic(o, OVERLAP_LOGIC_CHECK, k, c, use_processes);
    if (o->logics & OVERLAP_LOGIC_RESERVE) {
        if (kvi_conn_caps(c) & KVI_CAP_CONDITIONAL) {
            rc |= run_logic(o, OVERLAP_LOGIC_RESERVE, k, c, use_processes);
        } else {
            printf("reserve: SKIPPED: engine '%s' has no KVI_CAP_CONDITIONAL (bounded sub)\n",
                   kvi_conn_engine(c));
            skipped = 1;
        }
    }
    kvi_free(k);
    if (rc)
        return 1;
    return skipped ? 77 : 0;
}
