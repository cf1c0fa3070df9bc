/*
 * test_redis_sentinel.c -- the redis engine through Redis Sentinel against
 * real servers (testsentinel.h): a master, 2 replicas and 3 sentinels with
 * quorum 2.  The master is found through the sentinels (a dead sentinel
 * first in the list costs nothing but its connect), an unknown master name
 * and all sentinels down are clear errors within connect_timeout, and a
 * failover (SENTINEL FAILOVER, then kill -9 of the master) is followed
 * under 4 writers with wait_replicas=2, the replica count (after the kill
 * the test restarts the killed server, as an operator would): every write
 * that kvi acknowledged is on the new master, and writes resume within the
 * failover time plus 1 s, the failover time being what the test sees
 * itself from the sentinels (+switch-master) and the new master (2
 * replicas online and acknowledging) -- a gap that never closes counts.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvi/kvi.h"
#include "kvitest.h"
#include "testsentinel.h"
#include "testtls.h"

#define CONNECT_TIMEOUT_MS 500
#define MARGIN_MS 1500

static kvi_tsn_setup *g_setup;
static char g_url[1024];

static int group_setup(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {.replicas = 2, .sentinels = 3, .quorum = 2, .down_after_ms = 1000};
    kvi_ts_result r = kvi_tsn_start(&spec, &g_setup);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    if (r != KVI_TS_OK)
        kvi_test_fail("cannot start the sentinel set-up: %s", kvi_ts_errmsg());
    kvi_tsn_url(g_setup, "redis", g_url, sizeof g_url);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kvi_tsn_free(g_setup);
    return 0;
}

static kvi *open_url(const char *url)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_OK) {
        /* The URL holds passwords: only its redacted form goes to the log. */
        char shown[1024] = "(unparsable)", err[256];
        kvi_url *u = NULL;
        if (kvi_url_parse(url, &u, err, sizeof err) == KVI_OK)
            kvi_url_format_redacted(u, shown, sizeof shown);
        kvi_url_free(u);
        fail_msg("kvi_add_url %s: %s: %s", shown, kvi_status_name(st), kvi_errmsg(k));
    }
    return k;
}

/* The port of the master kvi talks to (ROLE answers "master" there, and
 * INFO server names its port). */
static unsigned master_port_or_0(kvi *k, int must)
{
    kvi_reply *r = NULL;
    const char *q = "CONFIG GET port";
    kvi_status st = kvi_raw_query(k, "redis", q, strlen(q), &r);
    if (st != KVI_OK && !must)
        return 0;
    if (st != KVI_OK)
        fail_msg("CONFIG GET port: %s: %s", kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(kvi_reply_type_of(r), KVI_REPLY_ARRAY);
    assert_int_equal(kvi_reply_count(r), 2);
    size_t len;
    const char *p = kvi_reply_str(kvi_reply_element(r, 1), &len);
    unsigned port = (unsigned)atoi(p);
    kvi_reply_free(r);
    return port;
}

static unsigned master_port(kvi *k)
{
    return master_port_or_0(k, 1);
}

static void test_sentinel_names_the_master(void **state)
{
    (void)state;
    kvi *k = open_url(g_url);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_store(k, "redis", "sk", 2, "via sentinel", 12, 0), KVI_OK);
    assert_int_equal(kvi_fetch(k, "redis", "sk", 2, &v), KVI_OK);
    assert_memory_equal(v.data, "via sentinel", 12);
    kvi_value_free(&v);
    assert_int_equal(master_port(k), kvi_ts_port(kvi_tsn_data(g_setup, 0)));
    kvi_free(k);
}

static void test_a_dead_sentinel_first_is_skipped(void **state)
{
    (void)state;
    uint16_t dead;
    assert_int_equal(kvi_ts_free_port(&dead), KVI_TS_OK);
    char url[1200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u,%s&connect_timeout=%d", (unsigned)dead,
             g_url + strlen("redis://"), CONNECT_TIMEOUT_MS);
    kvi *k = open_url(url);
    int64_t n = 0;
    assert_int_equal(kvi_add(k, "redis", "sc", 2, 5, 0, &n), KVI_OK);
    kvi_free(k);
}

static void expect_open_error(const char *url, kvi_status want, const char *needle)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    int64_t t0 = kvi_test_mono_ms();
    kvi_status st = kvi_add_url(k, url);
    int64_t ms = kvi_test_mono_ms() - t0;
    print_message("  %s -> %s in %lld ms: %s\n", url, kvi_status_name(st), (long long)ms,
                  kvi_errmsg(k));
    if (st != want)
        fail_msg("got %s (%s), want %s", kvi_status_name(st), kvi_errmsg(k), kvi_status_name(want));
    assert_non_null(strstr(kvi_errmsg(k), needle));
    assert_true(ms < CONNECT_TIMEOUT_MS * 3 + MARGIN_MS);
    kvi_free(k);
}

static void test_unknown_master_name_is_backend_error(void **state)
{
    (void)state;
    char url[1200];
    size_t n = strlen(g_url) - strlen("mymaster");
    snprintf(url, sizeof url, "%.*snosuchmaster&connect_timeout=%d&timeout=%d", (int)n, g_url,
             CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS);
    expect_open_error(url, KVI_E_BACKEND, "does not know a master named \"nosuchmaster\"");
}

static void test_all_sentinels_down_is_connect_error(void **state)
{
    (void)state;
    uint16_t a, b;
    assert_int_equal(kvi_ts_free_port(&a), KVI_TS_OK);
    assert_int_equal(kvi_ts_free_port(&b), KVI_TS_OK);
    char url[256];
    snprintf(url, sizeof url,
             "redis://127.0.0.1:%u,127.0.0.1:%u/?sentinel=mymaster&connect_timeout=%d&timeout=%d",
             (unsigned)a, (unsigned)b, CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS);
    expect_open_error(url, KVI_E_CONNECT, "no sentinel answered");
}

/* ---------------------------------------------------------------------- */
/* Sentinel's own account of a failover: the test subscribes (PSUBSCRIBE *)
 * to every sentinel itself and keeps the time each event came. */

#define MAX_EVENTS 512
struct sentinel_event {
    int64_t t_ms;
    char channel[40];
    char payload[200];
};

struct event_log {
    pthread_mutex_t mu;
    struct sentinel_event ev[MAX_EVENTS];
    size_t n;
    _Atomic int stop;
    pthread_t th;
};

/* One RESP array of bulk strings / integers from buf[0..len): 1 with the
 * elements (pointers into buf) and *used, 0 when incomplete, -1 when not
 * understood. */
static int parse_array(const char *buf, size_t len, const char **el, size_t *ellen, size_t maxel,
                       size_t *nel, size_t *used)
{
    const char *end = buf + len, *p = buf;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
        return 0;
    if (*p != '*')
        return -1;
    long n = atol(p + 1);
    if (n < 0 || (size_t)n > maxel)
        return -1;
    p = nl + 1;
    for (long i = 0; i < n; i++) {
        if (p >= end || (nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
            return 0;
        if (*p == ':') {
            el[i] = p + 1;
            ellen[i] = (size_t)(nl - p - 2);
            p = nl + 1;
            continue;
        }
        if (*p != '$')
            return -1;
        long l = atol(p + 1);
        if (l < 0 || l > 4096)
            return -1;
        p = nl + 1;
        if ((size_t)(end - p) < (size_t)l + 2)
            return 0;
        el[i] = p;
        ellen[i] = (size_t)l;
        p += l + 2;
    }
    *nel = (size_t)n;
    *used = (size_t)(p - buf);
    return 1;
}

static int connect_local(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *event_main(void *arg)
{
    struct event_log *log = arg;
    size_t ns = kvi_tsn_nsentinels(g_setup);
    struct pollfd pfd[8];
    if (ns > 8)
        ns = 8;
    static char buf[8][16384];
    size_t have[8] = {0};
    for (size_t i = 0; i < ns; i++) {
        pfd[i].fd = connect_local(kvi_ts_port(kvi_tsn_sentinel(g_setup, i)));
        pfd[i].events = POLLIN;
        if (pfd[i].fd >= 0 && write(pfd[i].fd, "PSUBSCRIBE *\r\n", 14) != 14) {
            close(pfd[i].fd);
            pfd[i].fd = -1;
        }
    }
    while (!atomic_load(&log->stop)) {
        if (poll(pfd, ns, 100) <= 0)
            continue;
        for (size_t i = 0; i < ns; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(pfd[i].fd, buf[i] + have[i], sizeof buf[i] - have[i]);
            if (got <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                continue;
            }
            have[i] += (size_t)got;
            int64_t now = kvi_test_mono_ms();
            for (;;) {
                const char *el[4];
                size_t ellen[4], nel = 0, used = 0;
                int r = parse_array(buf[i], have[i], el, ellen, 4, &nel, &used);
                if (r < 0) {
                    have[i] = 0;
                    break;
                }
                if (r == 0)
                    break;
                if (nel == 4 && ellen[0] == 8 && memcmp(el[0], "pmessage", 8) == 0) {
                    pthread_mutex_lock(&log->mu);
                    if (log->n < MAX_EVENTS) {
                        struct sentinel_event *e = &log->ev[log->n++];
                        e->t_ms = now;
                        snprintf(e->channel, sizeof e->channel, "%.*s", (int)ellen[2], el[2]);
                        snprintf(e->payload, sizeof e->payload, "%.*s", (int)ellen[3], el[3]);
                    }
                    pthread_mutex_unlock(&log->mu);
                }
                memmove(buf[i], buf[i] + used, have[i] - used);
                have[i] -= used;
            }
            if (have[i] == sizeof buf[i])
                have[i] = 0;
        }
    }
    for (size_t i = 0; i < ns; i++)
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    return NULL;
}

static void events_start(struct event_log *log)
{
    memset(log, 0, sizeof *log);
    pthread_mutex_init(&log->mu, NULL);
    atomic_init(&log->stop, 0);
    assert_int_equal(pthread_create(&log->th, NULL, event_main, log), 0);
    usleep(200 * 1000); /* subscribed */
}

static void events_stop(struct event_log *log)
{
    atomic_store(&log->stop, 1);
    pthread_join(log->th, NULL);
    pthread_mutex_destroy(&log->mu);
}

/* Time of the first event on channel (whose payload contains needle, when
 * not NULL) at or after since, copying its payload; -1 when none yet. */
static int64_t event_time(struct event_log *log, const char *channel, const char *needle,
                          int64_t since, char *payload, size_t plen)
{
    int64_t t = -1;
    pthread_mutex_lock(&log->mu);
    for (size_t i = 0; i < log->n && t < 0; i++)
        if (log->ev[i].t_ms >= since && strcmp(log->ev[i].channel, channel) == 0 &&
            (needle == NULL || strstr(log->ev[i].payload, needle) != NULL)) {
            t = log->ev[i].t_ms;
            if (payload != NULL)
                snprintf(payload, plen, "%s", log->ev[i].payload);
        }
    pthread_mutex_unlock(&log->mu);
    return t;
}

/* The payload of the last event on channel since `since`: its time, or -1. */
static int64_t event_last(struct event_log *log, const char *channel, int64_t since,
                          char *payload, size_t plen)
{
    int64_t t = -1;
    pthread_mutex_lock(&log->mu);
    for (size_t i = 0; i < log->n; i++)
        if (log->ev[i].t_ms >= since && strcmp(log->ev[i].channel, channel) == 0) {
            t = log->ev[i].t_ms;
            snprintf(payload, plen, "%s", log->ev[i].payload);
        }
    pthread_mutex_unlock(&log->mu);
    return t;
}

static void events_print(struct event_log *log, int64_t t0)
{
    pthread_mutex_lock(&log->mu);
    for (size_t i = 0; i < log->n; i++)
        if (log->ev[i].t_ms >= t0 && log->ev[i].channel[0] != '_' &&
            strcmp(log->ev[i].channel, "__sentinel__:hello") != 0)
            print_message("    %+6lld ms %s %s\n", (long long)(log->ev[i].t_ms - t0),
                          log->ev[i].channel, log->ev[i].payload);
    pthread_mutex_unlock(&log->mu);
}

/* Replicas of the server on port that are online and have acknowledged
 * data (INFO replication "slaveN:...,state=online,offset=X" with X > 0: a
 * replica's offset is 0 until its first REPLCONF ACK after the sync, and
 * only from then on can a WAIT count it); -1 when the server does not
 * answer or is not a master. */
static int online_replicas(uint16_t port)
{
    char buf[4096];
    if (kvi_tsn_query(port, "INFO replication", buf, sizeof buf) != 0 ||
        strstr(buf, "role:master") == NULL)
        return -1;
    int n = 0;
    for (const char *p = buf; (p = strstr(p, "state=online,offset=")) != NULL; p++)
        if (atoll(p + strlen("state=online,offset=")) > 0)
            n++;
    return n;
}

/* ---------------------------------------------------------------------- */
/* Writers: each adds 1 to its own counter with wait_replicas set, and
 * counts what kvi acknowledged. */

#define WRITERS 4
struct writer {
    kvi *k;
    int idx;
    _Atomic int *stop;
    _Atomic int_least64_t *t0; /* failover start, 0 before */
    int64_t acked, acked_after_t0;
    int64_t last_ok_ms, longest_gap_ms, first_ok_after_t0_ms;
    int64_t errors[KVI_STATUS_COUNT + 1];
    char first_error[200], last_error[200];
};

/* A gap is the time without an acknowledged write; the one across the
 * failover start is counted from t0 (writes before it are normal ones). */
static void note_gap(struct writer *w, int64_t now)
{
    int64_t t0 = atomic_load(w->t0);
    int64_t from = w->last_ok_ms;
    if (t0 > 0 && from < t0 && now >= t0)
        from = t0;
    if (now - from > w->longest_gap_ms)
        w->longest_gap_ms = now - from;
}

static void *write_loop(void *arg)
{
    struct writer *w = arg;
    char key[16];
    snprintf(key, sizeof key, "ctr%d", w->idx);
    w->last_ok_ms = kvi_test_mono_ms();
    while (!atomic_load(w->stop)) {
        int64_t v = 0;
        kvi_status st = kvi_add(w->k, "redis", key, strlen(key), 1, 0, &v);
        int64_t now = kvi_test_mono_ms(), t0 = atomic_load(w->t0);
        if (st == KVI_OK) {
            w->acked++;
            if (t0 > 0 && now >= t0) {
                if (w->acked_after_t0++ == 0)
                    w->first_ok_after_t0_ms = now - t0;
            }
            note_gap(w, now);
            w->last_ok_ms = now;
        } else {
            w->errors[(unsigned)st <= KVI_STATUS_COUNT ? (unsigned)st : KVI_STATUS_COUNT]++;
            snprintf(w->last_error, sizeof w->last_error, "%s: %s", kvi_status_name(st),
                     kvi_errmsg(w->k));
            if (w->first_error[0] == '\0')
                snprintf(w->first_error, sizeof w->first_error, "%s", w->last_error);
            usleep(10 * 1000);
        }
    }
    return NULL;
}

static void count_switch(void *ud, kvi_log_level level, const char *msg)
{
    (void)level;
    if (strstr(msg, "+switch-master") != NULL)
        atomic_fetch_add((_Atomic int *)ud, 1);
}

/* Runs WRITERS threads adding to ctr0..ctr3 on k (wait_replicas = want)
 * while failover() makes the master change.  The failover time is
 * Sentinel's: from the start until a sentinel published +switch-master
 * and the new master has `want` replicas online (INFO replication), i.e.
 * until the servers themselves can confirm a write to that many replicas.
 * Checks that every acknowledged add is on the new master, that every
 * writer had writes acknowledged after that, and that no writer was
 * without an acknowledged write for longer than the failover time plus
 * 1 s -- the gap that has not closed when the writers stop counts too. */
static void writes_across_failover(kvi *k, unsigned want,
                                   void (*failover)(kvi *k, unsigned master_port),
                                   void (*after_switch)(void))
{
    unsigned before = master_port(k);
    for (int i = 0; i < WRITERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "ctr%d", i);
        kvi_remove(k, "redis", key, strlen(key));
    }
    static struct event_log log;
    events_start(&log);
    _Atomic int stop = 0;
    _Atomic int_least64_t t0_shared = 0;
    struct writer w[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){.k = k, .idx = i, .stop = &stop, .t0 = &t0_shared};
        assert_int_equal(pthread_create(&th[i], NULL, write_loop, &w[i]), 0);
    }
    usleep(300 * 1000);
    int64_t t0 = kvi_test_mono_ms();
    atomic_store(&t0_shared, t0);
    failover(k, before);
    /* Sentinel's account: +switch-master names the new master; then wait
     * (bounded) until it has `want` replicas online. */
    char sw[200] = "";
    int64_t t_switch = -1, t_ready = -1;
    unsigned after = 0;
    while (kvi_test_mono_ms() - t0 < 40000) {
        if (t_switch < 0 &&
            (t_switch = event_time(&log, "+switch-master", NULL, t0, sw, sizeof sw)) >= 0) {
            char name[64], oldip[64], newip[64];
            unsigned op = 0;
            if (sscanf(sw, "%63s %63s %u %63s %u", name, oldip, &op, newip, &after) != 5)
                fail_msg("cannot read +switch-master \"%s\"", sw);
            if (after_switch != NULL)
                after_switch();
        }
        /* On a loaded machine the sentinels may fail over once more (the
         * newly promoted master missed their pings): the master whose
         * replicas count is the one the last +switch-master named. */
        if (t_switch >= 0 && event_last(&log, "+switch-master", t0, sw, sizeof sw) >= 0) {
            char name[64], oldip[64], newip[64];
            unsigned op = 0, now_master = 0;
            if (sscanf(sw, "%63s %63s %u %63s %u", name, oldip, &op, newip, &now_master) == 5)
                after = now_master;
        }
        if (t_switch >= 0 && online_replicas((uint16_t)after) >= (int)want) {
            t_ready = kvi_test_mono_ms();
            break;
        }
        usleep(20 * 1000);
    }
    /* The writers go on for 2 s more: a gap longer than the failover time
     * plus 1 s shows even when it never closes. */
    int64_t t_end = (t_ready > 0 ? t_ready : kvi_test_mono_ms()) + 2000;
    while (kvi_test_mono_ms() < t_end)
        usleep(50 * 1000);
    int64_t t_stop = kvi_test_mono_ms();
    atomic_store(&stop, 1);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < WRITERS; i++)
        note_gap(&w[i], t_stop);
    print_message("  events after the failover began (t0):\n");
    events_print(&log, t0);
    int64_t t_end_ev = event_time(&log, "+failover-end", NULL, t0, NULL, 0);
    int64_t t_conv = event_time(&log, "+convert-to-slave", NULL, t0, NULL, 0);
    events_stop(&log);
    int64_t failover_ms = t_ready >= 0 ? t_ready - t0 : -1;
    print_message("  master %u -> %u: +switch-master at %lld ms, +failover-end at %lld ms, "
                  "+convert-to-slave at %lld ms, %u replica(s) online and acknowledging at %lld ms = failover "
                  "time; writers stopped at %lld ms\n",
                  before, after, (long long)(t_switch >= 0 ? t_switch - t0 : -1),
                  (long long)(t_end_ev >= 0 ? t_end_ev - t0 : -1),
                  (long long)(t_conv >= 0 ? t_conv - t0 : -1), want, (long long)failover_ms,
                  (long long)(t_stop - t0));
    if (t_switch < 0)
        fail_msg("no sentinel published +switch-master within 40 s");
    if (t_ready < 0)
        fail_msg("the new master %u never had %u replica(s) online within 40 s", after, want);
    assert_int_not_equal(before, after);
    int bad = 0;
    for (int i = 0; i < WRITERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "ctr%d", i);
        int64_t v = -1;
        kvi_status st = kvi_counter_fetch(k, "redis", key, strlen(key), &v);
        print_message("  writer %d: %lld acknowledged (%lld after t0, the first at %lld ms), "
                      "counter %lld (%s), longest gap %lld ms (limit %lld); errors: TIMEOUT %lld, "
                      "CONNECT %lld, BACKEND %lld, IO %lld\n",
                      i, (long long)w[i].acked, (long long)w[i].acked_after_t0,
                      (long long)w[i].first_ok_after_t0_ms, (long long)v, kvi_status_name(st),
                      (long long)w[i].longest_gap_ms, (long long)(failover_ms + 1000),
                      (long long)w[i].errors[KVI_E_TIMEOUT], (long long)w[i].errors[KVI_E_CONNECT],
                      (long long)w[i].errors[KVI_E_BACKEND], (long long)w[i].errors[KVI_E_IO]);
        if (w[i].first_error[0] != '\0')
            print_message("    first error: %s\n    last error:  %s\n", w[i].first_error,
                          w[i].last_error);
        /* Every acknowledged add is there (an unacknowledged one may be
         * too). */
        if (st != KVI_OK || v < w[i].acked) {
            print_message("  FAIL writer %d: %lld acknowledged adds, counter %lld\n", i,
                          (long long)w[i].acked, (long long)v);
            bad = 1;
        }
        /* Writes resumed within the failover time plus 1 s. */
        if (w[i].acked_after_t0 == 0 || w[i].last_ok_ms < t_ready ||
            w[i].longest_gap_ms > failover_ms + 1000) {
            print_message("  FAIL writer %d: no acknowledged write for %lld ms (failover time "
                          "%lld ms + 1000), last one at %lld ms\n",
                          i, (long long)w[i].longest_gap_ms, (long long)failover_ms,
                          (long long)(w[i].last_ok_ms - t0));
            bad = 1;
        }
    }
    assert_false(bad);
}

/* SENTINEL FAILOVER (retried while it still says no good replica). */
static void sentinel_failover(kvi *k, unsigned master)
{
    (void)master;
    char sent_url[128];
    snprintf(sent_url, sizeof sent_url, "redis:sent://127.0.0.1:%u/?cluster=no",
             (unsigned)kvi_ts_port(kvi_tsn_sentinel(g_setup, 0)));
    kvi_status added = kvi_add_url(k, sent_url);
    assert_true(added == KVI_OK || added == KVI_E_EXISTS);
    for (int tries = 0;; tries++) {
        kvi_reply *r = NULL;
        const char *q = "SENTINEL FAILOVER mymaster";
        kvi_status st = kvi_raw_query(k, "redis:sent", q, strlen(q), &r);
        int ok = st == KVI_OK && kvi_reply_type_of(r) == KVI_REPLY_STATUS;
        if (!ok && st == KVI_OK)
            print_message("  SENTINEL FAILOVER: %s\n", kvi_reply_str(r, NULL));
        kvi_reply_free(r);
        if (ok)
            break;
        assert_true(tries < 100);
        usleep(100 * 1000);
    }
}

/* SENTINEL FAILOVER with wait_replicas=2 (both replicas): the old master
 * comes back as a replica of the new one, so the set-up has 2 replicas
 * again once Sentinel has converted it and it is in sync. */
static void test_failover_is_followed_and_no_acknowledged_write_is_lost(void **state)
{
    (void)state;
    static _Atomic int switches;
    char url[1200];
    snprintf(url, sizeof url, "%s&wait_replicas=2&timeout=1000&connect_timeout=%d",
             g_url, CONNECT_TIMEOUT_MS);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_set_log(k, count_switch, &switches, KVI_LOG_INFO), KVI_OK);
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    writes_across_failover(k, 2, sentinel_failover, NULL);
    /* kvi's own +switch-master listener saw it too. */
    for (int i = 0; i < 50 && atomic_load(&switches) == 0; i++)
        usleep(100 * 1000);
    assert_true(atomic_load(&switches) >= 1);
    kvi_free(k);
}

/* kill -9 of the master (remembered, for the operator's restart). */
static kvi_ts_server *g_killed;

static void kill_master(kvi *k, unsigned master)
{
    (void)k;
    for (size_t i = 0; i < kvi_tsn_ndata(g_setup); i++)
        if (kvi_ts_port(kvi_tsn_data(g_setup, i)) == master) {
            g_killed = kvi_tsn_data(g_setup, i);
            assert_int_equal(kvi_ts_kill(g_killed), KVI_TS_OK);
        }
}

/* What an operator does once Sentinel has failed over: start the killed
 * server again (empty: no persistence here); Sentinel makes it a replica of
 * the new master. */
static void restart_killed(void)
{
    int64_t t = kvi_test_mono_ms();
    assert_int_equal(kvi_ts_restart(g_killed), KVI_TS_OK);
    print_message("  the killed server was restarted (%lld ms)\n", (long long)(kvi_test_mono_ms() - t));
}

/* kill -9 of the master with wait_replicas=2, the replica count: no write
 * is acknowledged while one replica is missing; once the operator has
 * restarted the killed server and Sentinel has made it a replica of the
 * new master, the set-up has 2 replicas again and writes resume (see
 * docs/engines/redis.md: wait_replicas below the replica count loses
 * acknowledged writes in a SENTINEL FAILOVER). */
static void test_killed_master_is_replaced(void **state)
{
    (void)state;
    char url[1200];
    snprintf(url, sizeof url, "%s&wait_replicas=2&timeout=1000&connect_timeout=%d",
             g_url, CONNECT_TIMEOUT_MS);
    kvi *k = open_url(url);
    writes_across_failover(k, 2, kill_master, restart_killed);
    kvi_free(k);
}

/* Sentinels, master and replica all on TLS ports: kvi reaches the
 * sentinels and the master they name with the URL's TLS settings. */
static void test_sentinels_and_master_over_tls(void **state)
{
    (void)state;
    char *dir = NULL, url[2048];
    assert_int_equal(kvi_ts_make_tempdir("sentinel-tls", &dir), KVI_TS_OK);
    kvi_ts_result r = kvi_tt_make_certs(dir);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    assert_int_equal(r, KVI_TS_OK);
    kvi_tsn_spec spec = {.replicas = 1, .sentinels = 1, .quorum = 1, .tls_dir = dir};
    kvi_tsn_setup *ts = kvi_test_sentinels_case(&spec);
    size_t n = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "&tls=yes&tls_ca=%s/ca.pem", dir);
    kvi *k = open_url(url);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_store(k, "redis", "tk", 2, "tls sentinel", 12, 0), KVI_OK);
    assert_int_equal(kvi_fetch(k, "redis", "tk", 2, &v), KVI_OK);
    assert_memory_equal(v.data, "tls sentinel", 12);
    kvi_value_free(&v);
    kvi_free(k);
    /* Without tls=yes the sentinels' TLS ports do not answer in RESP. */
    size_t m = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + m, sizeof url - m, "&connect_timeout=%d&timeout=%d", CONNECT_TIMEOUT_MS,
             CONNECT_TIMEOUT_MS);
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_not_equal(kvi_add_url(k, url), KVI_OK);
    kvi_free(k);
    kvi_tsn_free(ts);
    kvi_ts_remove_tree(dir);
    free(dir);
}

/* Sentinels with requirepass: sentinel_password is theirs, the URL's
 * userinfo stays the data nodes' (none here). */
static void test_sentinel_password_authenticates_to_the_sentinels(void **state)
{
    (void)state;
    kvi_tsn_spec spec = {
        .replicas = 0, .sentinels = 1, .quorum = 1, .sentinel_password = "sent-s3cret"};
    kvi_tsn_setup *ts = kvi_test_sentinels_case(&spec);
    char url[1024];
    size_t n = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "&sentinel_password=sent-s3cret");
    kvi *k = open_url(url);
    assert_int_equal(kvi_store(k, "redis", "sp", 2, "x", 1, 0), KVI_OK);
    kvi_free(k);
    /* A wrong one: KVI_E_AUTH, the password nowhere in the message. */
    n = kvi_tsn_url(ts, "redis", url, sizeof url);
    snprintf(url + n, sizeof url - n, "&sentinel_password=wrong-pw&connect_timeout=%d",
             CONNECT_TIMEOUT_MS);
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    print_message("  wrong sentinel_password -> %s: %s\n", kvi_status_name(st), kvi_errmsg(k));
    assert_int_equal(st, KVI_E_AUTH);
    assert_null(strstr(kvi_errmsg(k), "wrong-pw"));
    kvi_free(k);
    kvi_tsn_free(ts);
}

/* Every log line of a context, joined (for "never in a message"). */
struct log_text {
    pthread_mutex_t mu;
    char text[16384];
    size_t len;
};

static void keep_log(void *ud, kvi_log_level level, const char *msg)
{
    (void)level;
    struct log_text *l = ud;
    pthread_mutex_lock(&l->mu);
    int n = snprintf(l->text + l->len, sizeof l->text - l->len, "%s\n", msg);
    if (n > 0)
        l->len += (size_t)n < sizeof l->text - l->len ? (size_t)n : sizeof l->text - l->len - 1;
    pthread_mutex_unlock(&l->mu);
}

/* A "sentinel" that echoes what it was sent: a redis-server without AUTH
 * answers "ERR unknown command 'AUTH', with args beginning with: '<the
 * password>'" (so does a Redis 5 sentinel, which has no AUTH).  The
 * sentinel_password is scrubbed from the message and the log like the
 * URL's password. */
static void test_sentinel_password_never_in_a_message(void **state)
{
    (void)state;
    const char *extra[] = {"--rename-command", "AUTH", "", NULL};
    kvi_ts_server *echo = NULL;
    kvi_ts_result r = kvi_ts_redis_start(&echo, extra);
    if (r == KVI_TS_MISSING)
        kvi_test_skip("%s", kvi_ts_errmsg());
    assert_int_equal(r, KVI_TS_OK);
    static struct log_text log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    const char *users[] = {"", "sentinel_user=watcher&"};
    for (size_t i = 0; i < 2; i++) {
        char url[512];
        snprintf(url, sizeof url,
                 "redis://:data-pw-7@127.0.0.1:%u/?sentinel=mymaster&%ssentinel_password="
                 "Sent1nel-pw-42&connect_timeout=%d&timeout=%d",
                 (unsigned)kvi_ts_port(echo), users[i], CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS);
        kvi *k = NULL;
        assert_int_equal(kvi_new(&k), KVI_OK);
        assert_int_equal(kvi_set_log(k, keep_log, &log, KVI_LOG_DEBUG), KVI_OK);
        kvi_status st = kvi_add_url(k, url);
        print_message("  echoing sentinel (%s) -> %s: %s\n", users[i][0] ? "user" : "no user",
                      kvi_status_name(st), kvi_errmsg(k));
        assert_int_not_equal(st, KVI_OK);
        /* The server did echo something of the AUTH command. */
        assert_non_null(strstr(kvi_errmsg(k), "AUTH"));
        assert_null(strstr(kvi_errmsg(k), "Sent1nel"));
        assert_null(strstr(kvi_errmsg(k), "data-pw"));
        kvi_free(k);
    }
    pthread_mutex_lock(&log.mu);
    print_message("  log:\n%s", log.text);
    assert_null(strstr(log.text, "Sent1nel"));
    pthread_mutex_unlock(&log.mu);
    kvi_ts_free(echo);
}

static void test_sentinel_password_is_hidden_like_the_password(void **state)
{
    (void)state;
    kvi_url *u = NULL;
    char err[256], out[512];
    const char *url = "redis://:data-pw@127.0.0.1:26379/?sentinel=m&sentinel_password=sent-pw";
    assert_int_equal(kvi_url_parse(url, &u, err, sizeof err), KVI_OK);
    kvi_url_format_redacted(u, out, sizeof out);
    kvi_url_free(u);
    assert_null(strstr(out, "data-pw"));
    assert_null(strstr(out, "sent-pw"));
    assert_non_null(strstr(out, "sentinel_password=***"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentinel_names_the_master),
        cmocka_unit_test(test_a_dead_sentinel_first_is_skipped),
        cmocka_unit_test(test_unknown_master_name_is_backend_error),
        cmocka_unit_test(test_all_sentinels_down_is_connect_error),
        cmocka_unit_test(test_failover_is_followed_and_no_acknowledged_write_is_lost),
        cmocka_unit_test(test_killed_master_is_replaced),
        cmocka_unit_test(test_sentinels_and_master_over_tls),
        cmocka_unit_test(test_sentinel_password_authenticates_to_the_sentinels),
        cmocka_unit_test(test_sentinel_password_is_hidden_like_the_password),
        cmocka_unit_test(test_sentinel_password_never_in_a_message),
    };
    /* KVI_TEST_FILTER=test_sentinel_password* runs only those cases. */
    if (getenv("KVI_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KVI_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
