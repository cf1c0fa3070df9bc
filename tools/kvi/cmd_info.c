/*
 * cmd_info.c -- the handlers of the commands that describe the
 * configuration rather than keys: stats, engines and url (with the options
 * an engine knows).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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

static void print_stats(const kvi__cli *cli, const char *id, const kvi_stats *s)
{
    const struct {
        const char *name;
        uint64_t v;
        int content;
    } f[] = {
        {"ops", s->ops, 0},           {"errors", s->errors, 0},     {"misses", s->misses, 0},
        {"slow_ops", s->slow_ops, 0}, {"rejected", s->rejected, 0}, {"total_us", s->total_us, 0},
        {"entries", s->entries, 1},   {"bytes", s->bytes, 1},       {"hits", s->hits, 1},
        {"expired", s->expired, 1},   {"evicted", s->evicted, 1},
    };
    if (cli->json) {
        kvi__cli_json_cstr(stdout, id);
        fputs(":{", stdout);
    } else {
        printf("%s:\n", id);
    }
    int first = 1;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].content && !s->has_content)
            continue;
        if (cli->json)
            printf("%s\"%s\":%" PRIu64, first ? "" : ",", f[i].name, f[i].v);
        else
            printf("  %-9s %" PRIu64 "\n", f[i].name, f[i].v);
        first = 0;
    }
    if (cli->json)
        fputc('}', stdout);
}

int kvi__cli_cmd_stats(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_stats s;
    if (o->id != NULL) {
        kvi_status st = kvi_stats_get(cli->k, o->id, &s);
        if (st != KVI_OK)
            return kvi__cli_fail(cli, st);
        if (cli->json)
            fputs("{\"status\":\"ok\",\"stats\":{", stdout);
        print_stats(cli, o->id, &s);
        if (cli->json)
            fputs("}}\n", stdout);
        return 0;
    }
    struct conn_list l;
    int rc = list_conns(cli, &l);
    if (rc >= 0)
        return rc;
    if (cli->json)
        fputs("{\"status\":\"ok\",\"stats\":{", stdout);
    for (size_t i = 0; i < l.n; i++) {
        kvi_status st = kvi_conn_stats(l.v[i], &s);
        if (st != KVI_OK) {
            if (cli->json)
                fputs("}}\n", stdout);
            free(l.v);
            return kvi__cli_fail(cli, st);
        }
        if (cli->json && i > 0)
            fputc(',', stdout);
        print_stats(cli, kvi_conn_id(l.v[i]), &s);
    }
    if (cli->json)
        fputs("}}\n", stdout);
    free(l.v);
    return 0;
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
