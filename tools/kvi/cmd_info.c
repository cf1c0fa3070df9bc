/*
 * cmd_info.c -- the handlers of the commands that describe the
 * configuration rather than keys: stats, engines and url (with the options
 * an engine knows).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

struct conn_list {
    kvi_conn **v;
    size_t n, cap;
    int nomem;
};

static void collect_conn(void *ud, kvi_conn *c)
{
    struct conn_list *l = ud;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        kvi_conn **nv = realloc(l->v, ncap * sizeof *nv);
        if (nv == NULL) {
            l->nomem = 1;
            return;
        }
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = c;
}

static int list_conns(kvi__cli *cli, struct conn_list *l)
{
    memset(l, 0, sizeof *l);
    kvi_status st = kvi_foreach_conn(cli->k, collect_conn, l);
    if (st != KVI_OK) {
        free(l->v);
        l->v = NULL;
        l->n = 0;
        return kvi__cli_fail(cli, st);
    }
    if (l->nomem) {
        free(l->v);
        l->v = NULL;
        l->n = 0;
        kvi__cli_report(cli, KVI_E_NOMEM, "listing engine ids");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    return -1;
}

int kvi__cli_cmd_engines(kvi__cli *cli, const kvi__cli_args *o)
{
    (void)o;
    struct conn_list l;
    int rc = list_conns(cli, &l);
    if (rc >= 0)
        return rc;
    if (cli->json)
        fputs("{\"status\":\"ok\",\"engines\":[", stdout);
    for (size_t i = 0; i < l.n; i++) {
        uint32_t caps = kvi_conn_caps(l.v[i]);
        if (cli->json) {
            fputs(i > 0 ? ",{\"id\":" : "{\"id\":", stdout);
            kvi__cli_json_cstr(stdout, kvi_conn_id(l.v[i]));
            fputs(",\"engine\":", stdout);
            kvi__cli_json_cstr(stdout, kvi_conn_engine(l.v[i]));
            fputs(",\"caps\":[", stdout);
        } else {
            printf("%s\t%s\t", kvi_conn_id(l.v[i]), kvi_conn_engine(l.v[i]));
        }
        int first = 1;
        for (unsigned b = 0; b < KVI_CAP_BITS; b++) {
            const char *name = kvi_cap_name(1u << b);
            if ((caps & (1u << b)) == 0 || name == NULL)
                continue;
            if (cli->json)
                printf("%s\"%s\"", first ? "" : ",", name);
            else
                printf("%s%s", first ? "" : ",", name);
            first = 0;
        }
        if (cli->json)
            fputs("]}", stdout);
        else
            printf("%s\n", first ? "-" : "");
    }
    if (cli->json)
        fputs("]}\n", stdout);
    free(l.v);
    return 0;
}

/* ---- stats ---------------------------------------------------------------- */

/* One engine id's figures; prev/elapsed_s give the rates of an interval. */
struct stat_row {
    kvi_conn *c;
    kvi_stats s, prev;
    int has_prev;
};

/* c - p for a counter, or c when it went back (a segment made anew). */
static uint64_t delta(uint64_t c, uint64_t p)
{
    return c >= p ? c - p : c;
}

/* Writes hits / (hits + misses) with 4 decimals, or none ("-" / null)
 * when nothing was looked up. */
static void print_ratio(const kvi__cli *cli, uint64_t hits, uint64_t misses)
{
    long double n = (long double)hits + (long double)misses;
    if (n == 0)
        fputs(cli->json ? "null" : "-", stdout);
    else
        printf("%.4Lf", (long double)hits / n);
}

static void field_u64(const kvi__cli *cli, const char *name, uint64_t v, int *first)
{
    if (cli->json)
        printf("%s\"%s\":%" PRIu64, *first ? "" : ",", name, v);
    else
        printf("  %-9s %" PRIu64 "\n", name, v);
    *first = 0;
}

static void field_rate(const kvi__cli *cli, const char *name, uint64_t d, double elapsed_s,
                       int *first)
{
    if (cli->json)
        printf("%s\"%s\":%.3f", *first ? "" : ",", name, (double)d / elapsed_s);
    else
        printf("  %-9s %.3f\n", name, (double)d / elapsed_s);
    *first = 0;
}

static void field_name(const kvi__cli *cli, const char *name, int *first)
{
    if (cli->json)
        printf("%s\"%s\":", *first ? "" : ",", name);
    else
        printf("  %-9s ", name);
    *first = 0;
}

/* The text or JSON block of one id: the counters, the hit ratio (where
 * the engine counts hits), shared/processes (a shared collection), and
 * with a previous reading the rates over the interval. */
static void print_stats(const kvi__cli *cli, const struct stat_row *r, double elapsed_s)
{
    const kvi_stats *s = &r->s;
    const struct {
        const char *name;
        uint64_t v;
        int content;
    } f[] = {
        {"ops", s->ops, 0},           {"errors", s->errors, 0},     {"misses", s->misses, 0},
        {"slow_ops", s->slow_ops, 0}, {"rejected", s->rejected, 0}, {"total_us", s->total_us, 0},
        {"entries", s->entries, 1},   {"bytes", s->bytes, 1},       {"hits", s->hits, 1},
        {"expired", s->expired, 1},   {"evicted", s->evicted, 1},   {"near_hits", s->near_hits, 2},
    };
    if (cli->json) {
        kvi__cli_json_cstr(stdout, kvi_conn_id(r->c));
        fputs(":{", stdout);
    } else {
        printf("%s:\n", kvi_conn_id(r->c));
    }
    int first = 1;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].content && !s->has_content)
            continue;
        if (f[i].content == 2 && f[i].v == 0)
            continue; /* near_hits: only where a near cache answered */
        field_u64(cli, f[i].name, f[i].v, &first);
    }
    if (s->has_content) {
        field_name(cli, "hit_ratio", &first);
        print_ratio(cli, s->hits, s->misses);
        if (!cli->json)
            fputc('\n', stdout);
    }
    if (s->shared) {
        if (cli->json)
            fputs(",\"shared\":true", stdout);
        else
            fputs("  shared    yes (ops, errors, misses, hits: every attached process)\n", stdout);
        field_u64(cli, "processes", s->processes, &first);
    }
    if (r->has_prev && elapsed_s > 0) {
        const kvi_stats *p = &r->prev;
        field_rate(cli, "ops/s", delta(s->ops, p->ops), elapsed_s, &first);
        field_rate(cli, "errors/s", delta(s->errors, p->errors), elapsed_s, &first);
        field_rate(cli, "misses/s", delta(s->misses, p->misses), elapsed_s, &first);
        if (s->has_content) {
            uint64_t dh = delta(s->hits, p->hits);
            field_rate(cli, "hits/s", dh, elapsed_s, &first);
            field_name(cli, "hit_ratio/interval", &first);
            print_ratio(cli, dh, delta(s->misses, p->misses));
            if (!cli->json)
                fputc('\n', stdout);
        }
        if (cli->json)
            printf(",\"interval_s\":%.3f", elapsed_s);
        else
            printf("  %-9s %.3f\n", "interval_s", elapsed_s);
    }
    if (cli->json)
        fputc('}', stdout);
}

/* A Prometheus label value: backslash, double quote and newline escaped
 * (engine ids and engine names never hold a password: the URL's userinfo
 * is not part of either). */
static void prom_label(const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            printf("\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", stdout);
        else
            fputc(*v, stdout);
    }
}

enum prom_kind { PROM_U64, PROM_U64_NONZERO, PROM_SECONDS, PROM_RATIO };

/* One metric family: its HELP and TYPE lines, then one sample per id that
 * has the figure. */
static void prom_family(const struct stat_row *rows, size_t n, const char *name, const char *type,
                        const char *help, size_t offset, int content, enum prom_kind kind)
{
    int header = 0;
    for (size_t i = 0; i < n; i++) {
        const kvi_stats *s = &rows[i].s;
        uint64_t v;
        memcpy(&v, (const char *)s + offset, sizeof v);
        if (content && !s->has_content)
            continue;
        if (kind == PROM_RATIO && s->hits + s->misses == 0)
            continue; /* nothing looked up: no ratio */
        if (kind == PROM_U64_NONZERO && v == 0)
            continue; /* as in the text: only where it counted */
        if (offset == offsetof(kvi_stats, processes) && !s->shared)
            continue;
        if (!header) {
            printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
            header = 1;
        }
        printf("%s{engine=\"", name);
        prom_label(kvi_conn_engine(rows[i].c));
        fputs("\",id=\"", stdout);
        prom_label(kvi_conn_id(rows[i].c));
        fputs("\"} ", stdout);
        if (kind == PROM_SECONDS)
            printf("%" PRIu64 ".%06" PRIu64 "\n", v / 1000000u, v % 1000000u);
        else if (kind == PROM_RATIO)
            printf("%.6Lf\n",
                   (long double)s->hits / ((long double)s->hits + (long double)s->misses));
        else
            printf("%" PRIu64 "\n", v);
    }
}

static void print_prometheus(const struct stat_row *rows, size_t n)
{
#define F(name, type, help, field, content, kind)                                                  \
    prom_family(rows, n, name, type, help, offsetof(kvi_stats, field), content, kind)
    F("kvi_ops_total", "counter",
      "Operations that reached the engine (a shared collection: of every attached process).", ops,
      0, PROM_U64);
    F("kvi_errors_total", "counter", "Operations that ended with an error.", errors, 0, PROM_U64);
    F("kvi_misses_total", "counter", "Operations that ended with KVI_NOT_FOUND.", misses, 0,
      PROM_U64);
    F("kvi_hits_total", "counter", "Fetches and counter reads that found their key.", hits, 1,
      PROM_U64);
    F("kvi_hit_ratio", "gauge", "hits / (hits + misses) since the counts began.", hits, 1,
      PROM_RATIO);
    F("kvi_near_hits_total", "counter",
      "Of the hits, fetches a near cache of this process answered (redis client_cache).", near_hits,
      0, PROM_U64_NONZERO);
    F("kvi_slow_ops_total", "counter", "Operations of this process slower than its threshold.",
      slow_ops, 0, PROM_U64);
    F("kvi_rejected_total", "counter", "Calls of this process refused before the engine.", rejected,
      0, PROM_U64);
    F("kvi_engine_seconds_total", "counter", "Time this process's timed calls spent in the engine.",
      total_us, 0, PROM_SECONDS);
    F("kvi_entries", "gauge", "Live entries.", entries, 1, PROM_U64);
    F("kvi_bytes", "gauge", "Bytes of keys and values.", bytes, 1, PROM_U64);
    F("kvi_expired_total", "counter", "Entries removed by expiry.", expired, 1, PROM_U64);
    F("kvi_evicted_total", "counter", "Entries removed by eviction.", evicted, 1, PROM_U64);
    F("kvi_shared", "gauge",
      "1 when ops, errors, misses and hits count every process of a shared collection.", shared, 0,
      PROM_U64);
    F("kvi_processes", "gauge", "Processes attached to the shared collection.", processes, 0,
      PROM_U64);
#undef F
}

/* Reads every row's statistics (the last reading kept as prev). */
static int read_rows(kvi__cli *cli, struct stat_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kvi_stats s;
        kvi_status st = kvi_conn_stats(rows[i].c, &s);
        if (st != KVI_OK)
            return kvi__cli_fail(cli, st);
        rows[i].prev = rows[i].s;
        rows[i].s = s;
    }
    return -1;
}

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps until monotonic time `until`; 0, or -1 when a signal
 * (SIGINT/SIGTERM/SIGHUP) asks to stop. */
static int sleep_until(double until)
{
    for (;;) {
        if (kvi__cli_signal() != 0)
            return -1;
        double left = until - monotonic_s();
        if (left <= 0)
            return 0;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL); /* a signal cuts it short: checked above */
    }
}

static void print_block(const kvi__cli *cli, const kvi__cli_args *o, const struct stat_row *rows,
                        size_t n, double elapsed_s)
{
    if (o->format == KVI_CLI_FORMAT_PROMETHEUS) {
        print_prometheus(rows, n);
        return;
    }
    if (cli->json)
        fputs("{\"status\":\"ok\",\"stats\":{", stdout);
    for (size_t i = 0; i < n; i++) {
        if (cli->json && i > 0)
            fputc(',', stdout);
        print_stats(cli, &rows[i], elapsed_s);
    }
    if (cli->json)
        fputs("}}\n", stdout);
}

int kvi__cli_cmd_stats(kvi__cli *cli, const kvi__cli_args *o)
{
    struct conn_list l;
    if (o->id != NULL) {
        memset(&l, 0, sizeof l);
        kvi_conn *c;
        kvi_status st = kvi_conn_get(cli->k, o->id, &c);
        if (st != KVI_OK)
            return kvi__cli_fail(cli, st);
        l.v = malloc(sizeof *l.v);
        if (l.v == NULL) {
            kvi__cli_report(cli, KVI_E_NOMEM, "reading statistics");
            return kvi__cli_exit_code(KVI_E_NOMEM);
        }
        l.v[0] = c;
        l.n = 1;
    } else {
        int rc = list_conns(cli, &l);
        if (rc >= 0)
            return rc;
    }
    struct stat_row *rows = calloc(l.n ? l.n : 1, sizeof *rows);
    if (rows == NULL) {
        free(l.v);
        kvi__cli_report(cli, KVI_E_NOMEM, "reading statistics");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    for (size_t i = 0; i < l.n; i++)
        rows[i].c = l.v[i];
    free(l.v);
    int rc = -1;
    double t = monotonic_s(), start = t;
    for (int64_t block = 0; rc < 0; block++) {
        double prev_t = t;
        rc = read_rows(cli, rows, l.n);
        if (rc >= 0)
            break;
        t = monotonic_s();
        for (size_t i = 0; i < l.n; i++)
            rows[i].has_prev = block > 0;
        if (block > 0 && !cli->json)
            fputc('\n', stdout); /* blocks apart */
        print_block(cli, o, rows, l.n, t - prev_t);
        fflush(stdout);
        if (o->interval_s == 0 || (o->count != 0 && block + 1 >= o->count))
            rc = 0;
        else if (sleep_until(start + (double)(block + 1) * (double)o->interval_s) != 0)
            rc = 0; /* asked to stop: what was printed stands */
    }
    free(rows);
    return rc;
}

static void url_field(const kvi__cli *cli, const char *name, const char *v, int *first)
{
    if (cli->json) {
        printf("%s\"%s\":", *first ? "" : ",", name);
        kvi__cli_json_cstr(stdout, v);
    } else {
        printf("%-9s ", name);
        if (v == NULL)
            fputs("(none)", stdout);
        else
            kvi__cli_write_escaped(stdout, v, strlen(v), 0);
        fputc('\n', stdout);
    }
    *first = 0;
}

/* The options URLs of scheme take, with their defaults: the engine's own
 * first, then the common ones.  An engine that cannot be loaded is
 * reported in their place (the URL itself is still shown). */
static void url_known_options(const kvi__cli *cli, const char *scheme)
{
    kvi *k = NULL;
    kvi_status st = kvi_new(&k);
    if (cli->json)
        fputs(",\"known_options\":[", stdout);
    for (size_t i = 0; st == KVI_OK; i++) {
        kvi_option_info info;
        st = kvi_engine_option(k, scheme, i, &info);
        if (st != KVI_OK)
            break;
        if (cli->json) {
            fputs(i > 0 ? ",{\"name\":" : "{\"name\":", stdout);
            kvi__cli_json_cstr(stdout, info.name);
            fputs(",\"kind\":", stdout);
            kvi__cli_json_cstr(stdout, info.kind);
            fputs(",\"default\":", stdout);
            kvi__cli_json_cstr(stdout, info.default_value);
            fputs(",\"allowed\":", stdout);
            kvi__cli_json_cstr(stdout, info.allowed);
            fputs(",\"help\":", stdout);
            kvi__cli_json_cstr(stdout, info.help);
            printf(",\"common\":%s}", info.common ? "true" : "false");
        } else {
            printf("%-9s %s%s%s  [%s]%s%s\n", "known", info.name,
                   info.default_value != NULL ? "=" : "",
                   info.default_value != NULL ? info.default_value : "", info.allowed,
                   info.help[0] != '\0' ? "  " : "", info.help);
        }
    }
    if (cli->json) {
        fputs("]", stdout);
        if (st != KVI_NOT_FOUND) {
            fputs(",\"known_options_error\":", stdout);
            kvi__cli_json_cstr(stdout, k != NULL ? kvi_errmsg(k) : kvi_strerror(st));
        }
    } else if (st != KVI_NOT_FOUND) {
        printf("%-9s (engine '%s' cannot be loaded: %s)\n", "known", scheme,
               k != NULL && kvi_errmsg(k)[0] != '\0' ? kvi_errmsg(k) : kvi_strerror(st));
    }
    kvi_free(k);
}

int kvi__cli_cmd_url(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_url *u = NULL;
    char err[512] = "";
    kvi_status st = kvi_url_parse(o->url.p, &u, err, sizeof err);
    if (st != KVI_OK) {
        kvi__cli_report(cli, st, err);
        return kvi__cli_exit_code(st);
    }
    size_t need = kvi_url_format_redacted(u, NULL, 0);
    char *red = malloc(need + 1);
    if (red == NULL) {
        kvi_url_free(u);
        kvi__cli_report(cli, KVI_E_NOMEM, "formatting the URL");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    kvi_url_format_redacted(u, red, need + 1);
    int first = 1;
    if (cli->json)
        fputs("{\"status\":\"ok\",\"url\":{", stdout);
    url_field(cli, "scheme", u->scheme, &first);
    url_field(cli, "group", u->group, &first);
    url_field(cli, "id", u->id, &first);
    url_field(cli, "user", u->user, &first);
    url_field(cli, "password", u->has_password ? "***" : NULL, &first);
    if (cli->json)
        fputs(",\"hosts\":[", stdout);
    for (size_t i = 0; i < u->nhosts; i++) {
        const kvi_url_host *h = &u->hosts[i];
        if (cli->json) {
            fputs(i > 0 ? ",{\"host\":" : "{\"host\":", stdout);
            kvi__cli_json_cstr(stdout, h->host);
            printf(",\"port\":%u,\"ipv6\":%s}", (unsigned)h->port, h->ipv6 ? "true" : "false");
        } else {
            printf("%-9s %s", "host", h->ipv6 ? "[" : "");
            kvi__cli_write_escaped(stdout, h->host, strlen(h->host), 0);
            fputs(h->ipv6 ? "]" : "", stdout);
            if (h->port != 0)
                printf(":%u", (unsigned)h->port);
            fputc('\n', stdout);
        }
    }
    if (cli->json)
        fputs("]", stdout);
    else if (u->nhosts == 0)
        printf("%-9s (none)\n", "host");
    url_field(cli, "database", u->database, &first);
    if (cli->json)
        fputs(",\"options\":{", stdout);
    for (size_t i = 0; i < u->noptions; i++) {
        const kvi_url_option *op = &u->options[i];
        /* An option holding a password (redis: sentinel_password) is shown
         * as the userinfo's password is. */
        size_t nl = strlen(op->name);
        const char *value =
            nl >= 8 && strcmp(op->name + nl - 8, "password") == 0 ? "***" : op->value;
        if (cli->json) {
            if (i > 0)
                fputc(',', stdout);
            kvi__cli_json_cstr(stdout, op->name);
            fputc(':', stdout);
            kvi__cli_json_cstr(stdout, value);
        } else {
            printf("%-9s ", "option");
            kvi__cli_write_escaped(stdout, op->name, strlen(op->name), 0);
            fputc('=', stdout);
            kvi__cli_write_escaped(stdout, value, strlen(value), 0);
            fputc('\n', stdout);
        }
    }
    if (cli->json)
        fputs("}", stdout);
    url_field(cli, "url", red, &first);
    url_known_options(cli, u->scheme);
    if (cli->json)
        fputs("}}\n", stdout);
    free(red);
    kvi_url_free(u);
    return 0;
}
