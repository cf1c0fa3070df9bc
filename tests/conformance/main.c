/*
 * main.c -- kvi-conformance: options, throwaway servers, and the blocks of
 * the contract suite (conformance.h) run as one cmocka group.
 *
 *   kvi-conformance --url local://                 engine id from the URL
 *   kvi-conformance --url-file FILE                 first URL line of a config file
 *   kvi-conformance --server redis|redis-near-cache|redis-tls|memcached|memcached-pool|redis-cluster|redis-tls-cluster
 *                                                   start throwaway servers first
 *   options: --time virtual|real   (default: virtual for local, real otherwise)
 *            --ops N               adds per thread in the concurrency tests
 *            --filter GLOB         run only matching tests (cmocka filter)
 *            --nonblocking         the single operations the tests check (store, fetch,
 *                                  remove, add/sub, bounded, store_nx, counter_fetch) go
 *                                  through kvi_start_* and a poll() loop instead
 */
#include "conformance.h"
#include "testtls.h"

/* --server redis-tls: the directory of its certificates. */
static char *conf_certdir;


/* ---- main ---------------------------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s (--url URL | --url-file FILE | --server "
            "redis|redis-near-cache|redis-tls|redis-cluster|redis-tls-cluster|memcached|memcached-pool)\n"
            "          [--time virtual|real] [--ops N] [--filter GLOB] [--nonblocking]\n",
            argv0);
    exit(2);
}

/* The first URL line of a config file. */
static void read_url_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, "kvi-conformance: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char line[sizeof conf_g.url];
    while (fgets(line, sizeof line, fp) != NULL) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, "\r\n");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        p[n] = '\0';
        if (*p == '\0' || *p == '#')
            continue;
        snprintf(conf_g.url, sizeof conf_g.url, "%s", p);
        break;
    }
    fclose(fp);
    if (conf_g.url[0] == '\0') {
        fprintf(stderr, "kvi-conformance: no URL in %s\n", path);
        exit(2);
    }
}

static void stop_servers(void)
{
    for (size_t i = 0; i < conf_g.nservers; i++)
        kvi_ts_free(conf_g.servers[i]);
    conf_g.nservers = 0;
    kvi_ts_remove_tree(conf_certdir);
    free(conf_certdir);
    conf_certdir = NULL;
#ifdef KVI_HAVE_TESTCLUSTER
    kvi_tc_free(conf_g.cluster);
    conf_g.cluster = NULL;
#endif
}

#ifdef KVI_HAVE_TESTCLUSTER
#define LAST_SLOT 16383u

/* Sends one command to cluster node i (a plain connection, no routing);
 * returns 0 when it answered +OK. */
static int node_ok(kvi *k, size_t i, const char *query)
{
    char id[32];
    snprintf(id, sizeof id, "redis:node%zu", i);
    kvi_reply *r = NULL;
    int ok = kvi_raw_query(k, id, query, strlen(query), &r) == KVI_OK &&
             kvi_reply_type_of(r) == KVI_REPLY_STATUS;
    if (!ok)
        fprintf(stderr, "kvi-conformance: %s on node %zu: %s%s\n", query, i, kvi_errmsg(k),
                r != NULL && kvi_reply_type_of(r) == KVI_REPLY_ERROR ? kvi_reply_str(r, NULL) : "");
    kvi_reply_free(r);
    return ok ? 0 : -1;
}

/*
 * Puts the slots of the first master (slot 0's) in the middle of a
 * migration to the master of slot 16383: MIGRATING on the first, IMPORTING
 * on the second, no key moved.  A key of those slots is then created and
 * served on the second master through ASK (the first answers "ASK slot
 * host:port" for every key it does not hold, and the engine must resend
 * with ASKING), so about a third of the suite's keys go through ASK on
 * every operation: the whole contract is checked across a migration, not
 * one case.  Returns the number of slots so set, or -1.
 */
static int start_migration(void)
{
    size_t from = 0, to = 0;
    char from_id[41], to_id[41];
    if (kvi_tc_master_of(conf_g.cluster, 0, 0, &from) != KVI_TS_OK ||
        kvi_tc_master_of(conf_g.cluster, 0, LAST_SLOT, &to) != KVI_TS_OK || from == to ||
        kvi_tc_node_id(conf_g.cluster, from, from_id) != KVI_TS_OK ||
        kvi_tc_node_id(conf_g.cluster, to, to_id) != KVI_TS_OK)
        return -1;
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK)
        return -1;
    char url[128];
    size_t nodes[2] = {from, to};
    for (size_t j = 0; j < 2; j++) {
        snprintf(url, sizeof url, "redis:node%zu://127.0.0.1:%u/?cluster=no", nodes[j],
                 kvi_tc_port(conf_g.cluster, nodes[j]));
        if (kvi_add_url(k, url) != KVI_OK) {
            kvi_free(k);
            return -1;
        }
    }
    /* The first master's slots: one range from 0 (as the test cluster
     * assigns them); its end found by bisection, since each
     * kvi_tc_master_of() asks the cluster. */
    unsigned last = 0, beyond = LAST_SLOT; /* owner(last) == from, owner(beyond) == to */
    while (beyond - last > 1) {
        unsigned mid = last + (beyond - last) / 2;
        size_t owner = 0;
        if (kvi_tc_master_of(conf_g.cluster, 0, mid, &owner) != KVI_TS_OK) {
            kvi_free(k);
            return -1;
        }
        if (owner == from)
            last = mid;
        else
            beyond = mid;
    }
    char q[128];
    int n = 0;
    for (unsigned slot = 0; slot <= last; slot++) {
        snprintf(q, sizeof q, "CLUSTER SETSLOT %u IMPORTING %s", slot, from_id);
        if (node_ok(k, to, q) != 0)
            break;
        snprintf(q, sizeof q, "CLUSTER SETSLOT %u MIGRATING %s", slot, to_id);
        if (node_ok(k, from, q) != 0)
            break;
        n++;
    }
    kvi_free(k);
    return n == (int)last + 1 ? n : -1;
}
#endif

/* Starts the servers --server asks for and builds the URL. */
static void start_servers(const char *what)
{
    kvi_ts_result r = KVI_TS_OK;
    if (strcmp(what, "redis") == 0 || strcmp(what, "redis-near-cache") == 0) {
        r = kvi_ts_redis_start(&conf_g.servers[0], NULL);
        if (r == KVI_TS_OK) {
            conf_g.nservers = 1;
            /* redis-near-cache: the same contract with the near cache on. */
            snprintf(conf_g.url, sizeof conf_g.url, "redis://127.0.0.1:%u/%s",
                     kvi_ts_port(conf_g.servers[0]),
                     strcmp(what, "redis") == 0 ? "" : "?client_cache=10000");
        }
    } else if (strcmp(what, "redis-tls") == 0) {
        /* TLS only on the port the URL names; the server's name is
         * checked against its certificate (localhost). */
        uint16_t tls_port = 0;
        r = kvi_ts_make_tempdir("certs", &conf_certdir);
        if (r == KVI_TS_OK)
            r = kvi_tt_make_certs(conf_certdir);
        if (r == KVI_TS_OK)
            r = kvi_tt_redis_start(&conf_g.servers[0], conf_certdir, "server", 0, NULL, &tls_port);
        if (r == KVI_TS_OK) {
            conf_g.nservers = 1;
            snprintf(conf_g.url, sizeof conf_g.url, "redis://localhost:%u/?tls=yes&tls_ca=%s/ca.pem",
                     (unsigned)tls_port, conf_certdir);
        }
    } else if (strcmp(what, "memcached") == 0 || strcmp(what, "memcached-pool") == 0) {
        size_t want = strcmp(what, "memcached") == 0 ? 1 : 3;
        int n = snprintf(conf_g.url, sizeof conf_g.url, "memcached://");
        for (size_t i = 0; i < want && r == KVI_TS_OK; i++) {
            r = kvi_ts_memcached_start(&conf_g.servers[i], NULL);
            if (r == KVI_TS_OK) {
                conf_g.nservers++;
                n += snprintf(conf_g.url + n, sizeof conf_g.url - (size_t)n, "%s127.0.0.1:%u", i ? "," : "",
                              kvi_ts_port(conf_g.servers[i]));
            }
        }
        snprintf(conf_g.url + n, sizeof conf_g.url - (size_t)n, "/");
    } else if (strcmp(what, "redis-tls-cluster") == 0) {
#ifdef KVI_HAVE_TESTCLUSTER
        /* 3 masters + 3 replicas, tls-cluster yes; kvi is given the TLS
         * ports and learns the others' TLS ports from the cluster. */
        r = kvi_ts_make_tempdir("certs", &conf_certdir);
        if (r == KVI_TS_OK)
            r = kvi_tt_make_certs(conf_certdir);
        kvi_tc_spec spec = {.masters = 3, .replicas = 1, .tls_dir = conf_certdir};
        if (r == KVI_TS_OK)
            r = kvi_tc_start(&spec, &conf_g.cluster);
        if (r == KVI_TS_OK) {
            snprintf(conf_g.url, sizeof conf_g.url,
                     "redis://localhost:%u/?cluster=yes&tls=yes&tls_ca=%s/ca.pem",
                     (unsigned)kvi_tc_tls_port(conf_g.cluster, 0), conf_certdir);
        } else {
            fprintf(stderr, "%s\n", kvi_tc_errmsg());
        }
#else
        fprintf(stderr, "SKIP: --server redis-tls-cluster needs tests/support/testcluster.c\n");
        exit(SKIP_EXIT);
#endif
    } else if (strcmp(what, "redis-cluster") == 0) {
#ifdef KVI_HAVE_TESTCLUSTER
        kvi_tc_spec spec = {.masters = 3, .replicas = 0};
        r = kvi_tc_start(&spec, &conf_g.cluster);
        if (r == KVI_TS_OK) {
            size_t n = kvi_tc_url(conf_g.cluster, "redis", conf_g.url, sizeof conf_g.url);
            if (n + 1 < sizeof conf_g.url)
                snprintf(conf_g.url + n, sizeof conf_g.url - n, "?cluster=yes");
            int migrating = start_migration();
            if (migrating < 0) {
                fprintf(stderr, "kvi-conformance: cannot start the slot migration\n");
                stop_servers();
                exit(1);
            }
            printf("kvi-conformance: slots 0..%d migrating between two masters: their keys go "
                   "through ASK\n",
                   migrating - 1);
        } else {
            fprintf(stderr, "%s\n", kvi_tc_errmsg());
        }
#else
        fprintf(stderr, "SKIP: --server redis-cluster needs tests/support/testcluster.c "
                        "(not built into this binary)\n");
        exit(SKIP_EXIT);
#endif
    } else {
        usage("kvi-conformance");
    }
    if (r == KVI_TS_MISSING) {
        fprintf(stderr, "SKIP: %s\n", kvi_ts_errmsg());
        stop_servers();
        exit(SKIP_EXIT);
    }
    if (r != KVI_TS_OK) {
        fprintf(stderr, "kvi-conformance: cannot start %s: %s\n", what, kvi_ts_errmsg());
        stop_servers();
        exit(1);
    }
}

/* id = scheme[:group] of conf_g.url. */
static void derive_id(void)
{
    kvi_url *u = NULL;
    char err[256];
    if (kvi_url_parse(conf_g.url, &u, err, sizeof err) != KVI_OK) {
        fprintf(stderr, "kvi-conformance: bad URL: %s\n", err);
        exit(2);
    }
    snprintf(conf_g.id, sizeof conf_g.id, "%s", u->id);
    snprintf(conf_g.scheme, sizeof conf_g.scheme, "%s", u->scheme);
    kvi_url_free(u);
}

static void print_caps(uint32_t caps)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{KVI_CAP_TTL, "ttl"},
                 {KVI_CAP_COUNTERS, "counters"},
                 {KVI_CAP_NEG_COUNTERS, "neg"},
                 {KVI_CAP_BINARY, "binary"},
                 {KVI_CAP_ITERATE, "iterate"},
                 {KVI_CAP_RAW_QUERY, "raw"},
                 {KVI_CAP_PERSISTENT, "persist"},
                 {KVI_CAP_SHARED, "shared"},
                 {KVI_CAP_CONDITIONAL, "conditional"}};
    const char *sep = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (caps & names[i].bit) {
            printf("%s%s", sep, names[i].name);
            sep = ",";
        }
    }
}

/* Prints what is being tested and fails early, with the reason, when the
 * engine id cannot even be defined. */
static void describe_engine(int show_url)
{
    kvi *k = NULL;
    kvi_conn *c = NULL;
    kvi_status st = kvi_new(&k);
    if (st == KVI_OK)
        st = conf_define_engine(k);
    if (st == KVI_OK)
        st = kvi_conn_get(k, conf_g.id, &c);
    if (st != KVI_OK) {
        fprintf(stderr, "kvi-conformance: cannot define %s: %s (%s)\n", conf_g.id, kvi_status_name(st),
                kvi_errmsg(k));
        kvi_free(k);
        stop_servers();
        exit(1);
    }
    printf("kvi-conformance: engine id %s, %s time, caps ", conf_g.id,
           conf_g.virtual_time ? "virtual" : "real");
    print_caps(kvi_conn_caps(c));
    printf(", url %s\n", show_url ? conf_g.url : "(given)");
    fflush(stdout);
    kvi_free(k);
}

int main(int argc, char **argv)
{
    const char *server = NULL, *time_mode = NULL, *filter = NULL;
    conf_g.ops = 500;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--nonblocking") == 0) {
            conf_g.nonblocking = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage(argv[0]);
        if (strcmp(a, "--url") == 0)
            snprintf(conf_g.url, sizeof conf_g.url, "%s", argv[++i]);
        else if (strcmp(a, "--url-file") == 0)
            conf_g.url_file = argv[++i];
        else if (strcmp(a, "--server") == 0)
            server = argv[++i];
        else if (strcmp(a, "--time") == 0)
            time_mode = argv[++i];
        else if (strcmp(a, "--ops") == 0)
            conf_g.ops = atoi(argv[++i]);
        else if (strcmp(a, "--filter") == 0)
            filter = argv[++i];
        else
            usage(argv[0]);
    }
    if ((conf_g.url[0] != '\0') + (conf_g.url_file != NULL) + (server != NULL) != 1 || conf_g.ops < 1)
        usage(argv[0]);
    if (conf_g.url_file)
        read_url_file(conf_g.url_file);
    if (server)
        start_servers(server);
    derive_id();
    if (time_mode == NULL)
        conf_g.virtual_time = strcmp(conf_g.scheme, "local") == 0;
    else if (strcmp(time_mode, "virtual") == 0 || strcmp(time_mode, "real") == 0)
        conf_g.virtual_time = strcmp(time_mode, "virtual") == 0;
    else
        usage(argv[0]);
    snprintf(conf_g.run, sizeof conf_g.run, "%ld-%lld", (long)getpid(), (long long)kvi_test_wall_ms());
    describe_engine(server != NULL);
    if (filter)
        cmocka_set_test_filter(filter);

    /* The blocks in the order of docs/semantics.md; one cmocka group. */
    const conf_block *blocks[] = {&conf_store_block,       &conf_expiry_block,
                                  &conf_counters_block,    &conf_concurrency_block,
                                  &conf_query_block,       &conf_conditional_block,
                                  &conf_bad_input_block,   &conf_batch_block};
    size_t ntests = 0;
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        ntests += blocks[i]->count;
    struct CMUnitTest *tests = calloc(ntests, sizeof *tests);
    if (tests == NULL) {
        fprintf(stderr, "kvi-conformance: out of memory\n");
        stop_servers();
        return 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        for (size_t j = 0; j < blocks[i]->count; j++)
            tests[n++] = blocks[i]->tests[j];
    char group[300];
    snprintf(group, sizeof group, "conformance[%s]", conf_g.id);
    int rc = _cmocka_run_group_tests(group, tests, ntests, NULL, NULL);
    free(tests);
    stop_servers();
    return rc;
}
