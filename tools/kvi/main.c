/*
 * main.c -- the `kvi` command: options, the command table, argument
 * checking, the commands themselves and their output (text or JSON).
 *
 *     kvi [-u URL]... [-c FILE] [--json] COMMAND ARGS
 *
 * Arguments are checked completely (arity, numbers, a value read from
 * standard input) before the store is opened, so a usage error never
 * writes anything.  See docs/cli.md and docs/kvi.1.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* ---------------------------------------------------------------------- */
/* Status -> exit code, from the one table in kvi.h                        */

static const struct {
    kvi_status st;
    const char *name;
    int exit_code;
} status_table[] = {
#define KVI_CLI_STATUS_ROW(name, num, msg, exitcode) {KVI_##name, #name, exitcode},
    KVI_STATUS_MAP(KVI_CLI_STATUS_ROW)
#undef KVI_CLI_STATUS_ROW
};

#define NSTATUS (sizeof status_table / sizeof status_table[0])

int kvi__cli_exit_code(kvi_status st)
{
    for (size_t i = 0; i < NSTATUS; i++) {
        if (status_table[i].st == st)
            return status_table[i].exit_code;
    }
    /* A status newer than this build of the command. */
    return kvi__cli_exit_code(KVI_E_INTERNAL);
}

/* ---------------------------------------------------------------------- */
/* Commands                                                                */

enum op {
    OP_STORE,
    OP_FETCH,
    OP_REMOVE,
    OP_ADD,
    OP_SUB,
    OP_COUNTER,
    OP_RAW,
    OP_TTL,
    OP_KEYS,
    OP_REMOVE_CHUNK,
    OP_PING,
    OP_STATS,
    OP_ENGINES,
    OP_URL,
    OP_SHELL,
    OP_HELP
};

enum kind { K_NONE, K_ID, K_KEY, K_VALUE, K_DELTA, K_EXPIRE, K_GLOB, K_QUERY, K_URL };

#define F_STORE 1u /* needs the store (a context with engine ids) */

struct command {
    const char *name;
    const char *alias;
    const char *args; /* for the usage line */
    enum op op;
    size_t nreq;
    size_t nopt;
    enum kind kinds[4];
    unsigned flags;
    const char *what; /* one line for --help */
};

static const struct command commands[] = {
    {"store",
     "cache_store",
     "ID KEY VALUE [EXPIRE]",
     OP_STORE,
     3,
     1,
     {K_ID, K_KEY, K_VALUE, K_EXPIRE},
     F_STORE,
     "store VALUE under KEY"},
    {"fetch",
     "cache_fetch",
     "ID KEY",
     OP_FETCH,
     2,
     0,
     {K_ID, K_KEY},
     F_STORE,
     "write the value of KEY"},
    {"remove", "cache_remove", "ID KEY", OP_REMOVE, 2, 0, {K_ID, K_KEY}, F_STORE, "remove KEY"},
    {"add",
     "cache_add",
     "ID KEY DELTA [EXPIRE]",
     OP_ADD,
     3,
     1,
     {K_ID, K_KEY, K_DELTA, K_EXPIRE},
     F_STORE,
     "add DELTA to a counter"},
    {"sub",
     "cache_sub",
     "ID KEY DELTA [EXPIRE]",
     OP_SUB,
     3,
     1,
     {K_ID, K_KEY, K_DELTA, K_EXPIRE},
     F_STORE,
     "subtract DELTA from a counter"},
    {"counter",
     "cache_counter_fetch",
     "ID KEY",
     OP_COUNTER,
     2,
     0,
     {K_ID, K_KEY},
     F_STORE,
     "print a counter"},
    {"raw",
     "cache_raw_query",
     "ID QUERY",
     OP_RAW,
     2,
     0,
     {K_ID, K_QUERY},
     F_STORE,
     "run a query in the engine's language"},
    {"ttl",
     NULL,
     "ID KEY",
     OP_TTL,
     2,
     0,
     {K_ID, K_KEY},
     F_STORE,
     "print remaining seconds (-1: none)"},
    {"keys", NULL, "ID [GLOB]", OP_KEYS, 1, 1, {K_ID, K_GLOB}, F_STORE, "list keys matching GLOB"},
    {"remove-chunk",
     NULL,
     "ID GLOB",
     OP_REMOVE_CHUNK,
     2,
     0,
     {K_ID, K_GLOB},
     F_STORE,
     "remove keys matching GLOB"},
    {"ping", NULL, "ID", OP_PING, 1, 0, {K_ID}, F_STORE, "check that the store answers"},
    {"stats", NULL, "[ID]", OP_STATS, 0, 1, {K_ID}, F_STORE, "print statistics"},
    {"engines", NULL, "", OP_ENGINES, 0, 0, {K_NONE}, F_STORE, "list engine ids and capabilities"},
    {"url", NULL, "URL", OP_URL, 1, 0, {K_URL}, 0, "parse URL and show its parts"},
    {"shell", NULL, "", OP_SHELL, 0, 0, {K_NONE}, F_STORE, "run commands: interactive with history on a terminal, else one per line from standard input"},
    {"help", NULL, "", OP_HELP, 0, 0, {K_NONE}, 0, NULL},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* A command with its arguments checked. */
struct op_args {
    const struct command *cmd;
    const char *id; /* NULL for "stats" without ID */
    kvi__cli_arg key, value, glob, query, url;
    int has_glob;
    int64_t delta;
    int64_t expire_s;
    char *owned; /* value read from standard input */
};

/* ---------------------------------------------------------------------- */
/* Messages                                                                */

void kvi__cli_report(const kvi__cli *cli, kvi_status st, const char *detail)
{
    const char *msg = kvi_strerror(st);
    size_t ml = strlen(msg);
    /* Some details already begin with the status text ("bad URL: ..."). */
    if (detail != NULL && strncmp(detail, msg, ml) == 0 && detail[ml] == ':' &&
        detail[ml + 1] == ' ')
        detail += ml + 2;
    int has_detail = detail != NULL && detail[0] != '\0';
    if (cli->json) {
        if (st == KVI_NOT_FOUND) {
            fputs("{\"status\":\"not_found\"}\n", stdout);
            return;
        }
        printf("{\"status\":\"error\",\"error\":\"%s\",\"exit\":%d,\"message\":",
               kvi_status_name(st), kvi__cli_exit_code(st));
        if (has_detail) {
            size_t n = strlen(msg) + 2 + strlen(detail) + 1;
            char *both = malloc(n);
            if (both != NULL) {
                snprintf(both, n, "%s: %s", msg, detail);
                kvi__cli_json_cstr(stdout, both);
                free(both);
            } else {
                kvi__cli_json_cstr(stdout, msg);
            }
        } else {
            kvi__cli_json_cstr(stdout, msg);
        }
        fputs("}\n", stdout);
    }
    fflush(stdout);
    if (has_detail)
        fprintf(stderr, "kvi: %s: %s\n", msg, detail);
    else
        fprintf(stderr, "kvi: %s\n", msg);
}

/* The error of the last call on cli->k; returns its exit code. */
static int fail(const kvi__cli *cli, kvi_status st)
{
    /* NOT_FOUND is an outcome, not a failure: there is no detail message
     * for it (kvi_errmsg may still hold an older one). */
    kvi__cli_report(cli, st, cli->k != NULL && st != KVI_NOT_FOUND ? kvi_errmsg(cli->k) : NULL);
    return kvi__cli_exit_code(st);
}

static void usage_line(const kvi__cli *cli, const struct command *cmd)
{
    const char *pre = cli->in_shell ? "" : "kvi [OPTIONS] ";
    if (cmd == NULL)
        fprintf(stderr, "usage: %sCOMMAND [ARGS]   (%s)\n", pre,
                cli->in_shell ? "\"help\" lists the commands" : "kvi --help for more");
    else
        fprintf(stderr, "usage: %s%s%s%s\n", pre, cmd->name, cmd->args[0] ? " " : "", cmd->args);
}

/* Writes the reason of a usage error: what, then the offending word. */
static void usage_reason(FILE *f, const char *what, const kvi__cli_arg *arg)
{
    fputs(what, f);
    if (arg != NULL) {
        fputs(" \"", f);
        kvi__cli_write_escaped(f, arg->p, arg->len > 64 ? 64 : arg->len, 1);
        fputs(arg->len > 64 ? "...\"" : "\"", f);
    }
}

/* Reports a usage error: the reason, then the usage line.  Returns 2. */
static int usage_error(const kvi__cli *cli, const struct command *cmd, const char *what,
                       const kvi__cli_arg *arg)
{
    if (cli->json) {
        char *msg = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&msg, &len);
        if (m != NULL) {
            usage_reason(m, what, arg);
            fclose(m);
        }
        fputs("{\"status\":\"error\",\"error\":\"usage\",\"exit\":2,\"message\":", stdout);
        kvi__cli_json_cstr(stdout, msg != NULL ? msg : what);
        fputs("}\n", stdout);
        fflush(stdout);
        free(msg);
    }
    fputs("kvi: ", stderr);
    usage_reason(stderr, what, arg);
    fputc('\n', stderr);
    usage_line(cli, cmd);
    return KVI_CLI_EXIT_USAGE;
}

/* ---------------------------------------------------------------------- */
/* Argument checking                                                       */

/* Strict decimal int64: optional sign, digits, nothing else. */
static int parse_i64(const kvi__cli_arg *a, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (a->len > 0 && (a->p[0] == '-' || a->p[0] == '+')) {
        neg = a->p[0] == '-';
        i = 1;
    }
    if (i == a->len)
        return -1;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < a->len; i++) {
        char c = a->p[i];
        if (c < '0' || c > '9')
            return -1;
        unsigned d = (unsigned)(c - '0');
        if (v > (limit - d) / 10u)
            return -1;
        v = v * 10u + d;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

static int has_nul(const kvi__cli_arg *a)
{
    return memchr(a->p, '\0', a->len) != NULL;
}

/* Reads all of standard input into *out (at most KVI_MAX_VALUE_LEN bytes). */
static kvi_status read_stdin(char **out, size_t *len, char *err, size_t errlen)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        snprintf(err, errlen, "reading standard input");
        return KVI_E_NOMEM;
    }
    for (;;) {
        if (n == cap) {
            if (cap > KVI_MAX_VALUE_LEN) {
                free(buf);
                snprintf(err, errlen, "the value on standard input is larger than %u bytes",
                         KVI_MAX_VALUE_LEN);
                return KVI_E_INVALID;
            }
            size_t ncap = cap * 2;
            if (ncap > (size_t)KVI_MAX_VALUE_LEN + 1)
                ncap = (size_t)KVI_MAX_VALUE_LEN + 1;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                free(buf);
                snprintf(err, errlen, "reading standard input");
                return KVI_E_NOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin)) {
                snprintf(err, errlen, "reading standard input: %s", strerror(errno));
                free(buf);
                return KVI_E_IO;
            }
            break;
        }
    }
    if (n > KVI_MAX_VALUE_LEN) {
        free(buf);
        snprintf(err, errlen, "the value on standard input is larger than %u bytes",
                 KVI_MAX_VALUE_LEN);
        return KVI_E_INVALID;
    }
    *out = buf;
    *len = n;
    return KVI_OK;
}

static const struct command *find_command(const kvi__cli_arg *w)
{
    if (has_nul(w))
        return NULL;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcmp(w->p, c->name) == 0 || (c->alias != NULL && strcmp(w->p, c->alias) == 0))
            return c;
    }
    return NULL;
}

/*
 * Checks words[0..n) (words[0] is the command) into *o.  Returns -1 when
 * all is well, otherwise the exit status after reporting the problem.
 */
static int parse_args(kvi__cli *cli, const kvi__cli_arg *words, size_t n, const char *line,
                      size_t line_len, const size_t *word_ofs, struct op_args *o)
{
    memset(o, 0, sizeof *o);
    const struct command *cmd = find_command(&words[0]);
    if (cmd == NULL)
        return usage_error(cli, NULL, "unknown command", &words[0]);
    o->cmd = cmd;
    size_t nargs = n - 1;
    const kvi__cli_arg *a = words + 1;
    /* In the shell the query of raw is the rest of the line, verbatim, so
     * that it keeps the engine's own quoting. */
    kvi__cli_arg rest = {NULL, 0};
    int use_rest = 0;
    if (line != NULL && word_ofs != NULL && cmd->op == OP_RAW && nargs > 2) {
        size_t from = word_ofs[2];
        size_t to = line_len;
        while (to > from && (line[to - 1] == '\n' || line[to - 1] == '\r' || line[to - 1] == ' ' ||
                             line[to - 1] == '\t'))
            to--;
        rest.p = line + from;
        rest.len = to - from;
        nargs = 2;
        use_rest = 1;
    }
    if (nargs < cmd->nreq)
        return usage_error(cli, cmd, "missing arguments", NULL);
    if (nargs > cmd->nreq + cmd->nopt)
        return usage_error(cli, cmd, "too many arguments", NULL);
    if (cmd->op == OP_SHELL && cli->in_shell)
        return usage_error(cli, cmd, "already in the shell", NULL);
    o->expire_s = 0;
    for (size_t i = 0; i < nargs; i++) {
        const kvi__cli_arg *w = &a[i];
        if (use_rest && i == 1)
            w = &rest;
        switch (cmd->kinds[i]) {
        case K_ID:
            if (w->len == 0 || has_nul(w))
                return usage_error(cli, cmd, "bad engine id", w);
            o->id = w->p;
            break;
        case K_KEY:
            o->key = *w;
            break;
        case K_VALUE:
            o->value = *w;
            if (!cli->in_shell && w->len == 1 && w->p[0] == '-') {
                char err[256];
                kvi_status st = read_stdin(&o->owned, &o->value.len, err, sizeof err);
                if (st != KVI_OK) {
                    kvi__cli_report(cli, st, err);
                    return kvi__cli_exit_code(st);
                }
                o->value.p = o->owned;
            }
            break;
        case K_DELTA:
            if (parse_i64(w, &o->delta) != 0)
                return usage_error(cli, cmd, "DELTA is not a 64-bit integer", w);
            break;
        case K_EXPIRE:
            if (parse_i64(w, &o->expire_s) != 0 || o->expire_s < 0 || w->p[0] == '-')
                return usage_error(cli, cmd, "EXPIRE is not a non-negative integer", w);
            break;
        case K_GLOB:
            o->glob = *w;
            o->has_glob = 1;
            break;
        case K_QUERY:
            o->query = *w;
            break;
        case K_URL:
            if (has_nul(w))
                return usage_error(cli, cmd, "bad URL", NULL);
            o->url = *w;
            break;
        case K_NONE:
            break;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------------- */
/* Output of each command                                                  */

static void json_ok(void)
{
    fputs("{\"status\":\"ok\"}\n", stdout);
}

static void print_int_result(const kvi__cli *cli, const char *field, int64_t v)
{
    if (cli->json)
        printf("{\"status\":\"ok\",\"%s\":%" PRId64 "}\n", field, v);
    else
        printf("%" PRId64 "\n", v);
}

static void reply_text(const kvi_reply *r, size_t indent)
{
    size_t len;
    const char *s;
    switch (kvi_reply_type_of(r)) {
    case KVI_REPLY_NIL:
        fputs("(nil)\n", stdout);
        break;
    case KVI_REPLY_INTEGER:
        printf("(integer) %" PRId64 "\n", kvi_reply_integer(r));
        break;
    case KVI_REPLY_STRING:
        s = kvi_reply_str(r, &len);
        fputc('"', stdout);
        kvi__cli_write_escaped(stdout, s, len, 1);
        fputs("\"\n", stdout);
        break;
    case KVI_REPLY_STATUS:
        s = kvi_reply_str(r, &len);
        kvi__cli_write_escaped(stdout, s, len, 0);
        fputc('\n', stdout);
        break;
    case KVI_REPLY_ERROR:
        s = kvi_reply_str(r, &len);
        fputs("(error) ", stdout);
        kvi__cli_write_escaped(stdout, s, len, 0);
        fputc('\n', stdout);
        break;
    case KVI_REPLY_ARRAY: {
        size_t n = kvi_reply_count(r);
        if (n == 0) {
            fputs("(empty array)\n", stdout);
            break;
        }
        int width = snprintf(NULL, 0, "%zu", n);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                printf("%*s", (int)indent, "");
            printf("%*zu) ", width, i + 1);
            reply_text(kvi_reply_element(r, i), indent + (size_t)width + 2);
        }
        break;
    }
    }
}

static void reply_json(const kvi_reply *r)
{
    size_t len;
    const char *s;
    switch (kvi_reply_type_of(r)) {
    case KVI_REPLY_NIL:
        fputs("null", stdout);
        break;
    case KVI_REPLY_INTEGER:
        printf("%" PRId64, kvi_reply_integer(r));
        break;
    case KVI_REPLY_STRING:
        s = kvi_reply_str(r, &len);
        kvi__cli_json_bytes_value(stdout, s, len);
        break;
    case KVI_REPLY_STATUS:
    case KVI_REPLY_ERROR:
        s = kvi_reply_str(r, &len);
        printf("{\"%s\":", kvi_reply_type_of(r) == KVI_REPLY_STATUS ? "status" : "error");
        kvi__cli_json_bytes_value(stdout, s, len);
        fputc('}', stdout);
        break;
    case KVI_REPLY_ARRAY: {
        size_t n = kvi_reply_count(r);
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                fputc(',', stdout);
            reply_json(kvi_reply_element(r, i));
        }
        fputc(']', stdout);
        break;
    }
    }
}

struct key_ref {
    const char *p;
    size_t len;
};

static int key_cmp(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int do_keys(kvi__cli *cli, const struct op_args *o)
{
    kvi_reply *r = NULL;
    kvi_status st =
        kvi_keys(cli->k, o->id, o->has_glob ? o->glob.p : "*", o->has_glob ? o->glob.len : 1, &r);
    if (st != KVI_OK)
        return fail(cli, st);
    size_t n = kvi_reply_count(r);
    struct key_ref *refs = calloc(n ? n : 1, sizeof *refs);
    if (refs == NULL) {
        kvi_reply_free(r);
        kvi__cli_report(cli, KVI_E_NOMEM, "listing keys");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    for (size_t i = 0; i < n; i++)
        refs[i].p = kvi_reply_str(kvi_reply_element(r, i), &refs[i].len);
    /* Sorted so that the output is stable from run to run and engine to
     * engine. */
    qsort(refs, n, sizeof *refs, key_cmp);
    if (cli->json)
        fputs("{\"status\":\"ok\",\"keys\":[", stdout);
    for (size_t i = 0; i < n; i++) {
        if (refs[i].p == NULL)
            continue;
        if (cli->json) {
            if (i > 0)
                fputc(',', stdout);
            kvi__cli_json_bytes_value(stdout, refs[i].p, refs[i].len);
        } else {
            kvi__cli_write_escaped(stdout, refs[i].p, refs[i].len, 0);
            fputc('\n', stdout);
        }
    }
    if (cli->json)
        fputs("]}\n", stdout);
    free(refs);
    kvi_reply_free(r);
    return 0;
}

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

static const struct {
    uint32_t bit;
    const char *name;
} cap_names[] = {
    {KVI_CAP_TTL, "ttl"},
    {KVI_CAP_COUNTERS, "counters"},
    {KVI_CAP_NEG_COUNTERS, "neg_counters"},
    {KVI_CAP_BINARY, "binary"},
    {KVI_CAP_ITERATE, "iterate"},
    {KVI_CAP_RAW_QUERY, "raw_query"},
    {KVI_CAP_PERSISTENT, "persistent"},
    {KVI_CAP_SHARED, "shared"},
};

static int list_conns(kvi__cli *cli, struct conn_list *l)
{
    memset(l, 0, sizeof *l);
    kvi_status st = kvi_foreach_conn(cli->k, collect_conn, l);
    if (st != KVI_OK) {
        free(l->v);
        l->v = NULL;
        l->n = 0;
        return fail(cli, st);
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

static int do_engines(kvi__cli *cli)
{
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
        for (size_t b = 0; b < sizeof cap_names / sizeof cap_names[0]; b++) {
            if ((caps & cap_names[b].bit) == 0)
                continue;
            if (cli->json)
                printf("%s\"%s\"", first ? "" : ",", cap_names[b].name);
            else
                printf("%s%s", first ? "" : ",", cap_names[b].name);
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

static int do_stats(kvi__cli *cli, const struct op_args *o)
{
    kvi_stats s;
    if (o->id != NULL) {
        kvi_status st = kvi_stats_get(cli->k, o->id, &s);
        if (st != KVI_OK)
            return fail(cli, st);
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
            return fail(cli, st);
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

static int do_url(kvi__cli *cli, const struct op_args *o)
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
        if (cli->json) {
            if (i > 0)
                fputc(',', stdout);
            kvi__cli_json_cstr(stdout, op->name);
            fputc(':', stdout);
            kvi__cli_json_cstr(stdout, op->value);
        } else {
            printf("%-9s ", "option");
            kvi__cli_write_escaped(stdout, op->name, strlen(op->name), 0);
            fputc('=', stdout);
            kvi__cli_write_escaped(stdout, op->value, strlen(op->value), 0);
            fputc('\n', stdout);
        }
    }
    if (cli->json)
        fputs("}", stdout);
    url_field(cli, "url", red, &first);
    if (cli->json)
        fputs("}}\n", stdout);
    free(red);
    kvi_url_free(u);
    return 0;
}

static void print_help(FILE *f, int in_shell)
{
    if (!in_shell)
        fputs("usage: kvi [-u URL]... [-c FILE] [--json] COMMAND [ARGS]\n"
              "\n"
              "One key-value interface over many stores; ID names an engine id\n"
              "(\"local\", \"redis:billing\") defined by a URL.\n"
              "\n",
              f);
    fputs("Commands:\n", f);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (c->what == NULL || (in_shell && c->op == OP_SHELL))
            continue;
        char head[64];
        snprintf(head, sizeof head, "%s %s", c->name, c->args);
        fprintf(f, "  %-29s %s", head, c->what);
        if (c->alias != NULL)
            fprintf(f, " (alias %s)", c->alias);
        fputc('\n', f);
    }
    if (in_shell) {
        fputs("  help                          this list\n"
              "  quit, exit                    leave the shell\n"
              "Words are separated by blanks; \"a b\" and 'a b' quote, and inside \"...\"\n"
              "the escapes \\\" \\\\ \\n \\r \\t \\0 \\xHH give any byte.  When several words\n"
              "follow the ID of raw, its QUERY is the rest of the line, passed on verbatim.\n",
              f);
        return;
    }
    fputs("\n"
          "Options:\n"
          "  -u, --url URL       define an engine id from URL (repeatable)\n"
          "  -c, --config FILE   read URLs from FILE, one per line\n"
          "      --json          print one JSON document per command\n"
          "  -h, --help          print this help and exit\n"
          "      --version       print the version and exit\n"
          "\n"
          "VALUE \"-\" reads the value from standard input.  EXPIRE is in seconds\n"
          "(0 or absent: never).  Without -u and -c, \"local\" keeps its data in\n"
          "$XDG_STATE_HOME/kvi/local.kvis (default ~/.local/state/kvi).\n"
          "\n"
          "Exit status:\n"
          "  0   success\n"
          "  1   key not found\n"
          "  2   usage error\n",
          f);
    for (size_t i = 0; i < NSTATUS; i++) {
        if (status_table[i].exit_code < 3)
            continue;
        fprintf(f, "  %-3d %s (KVI_%s)\n", status_table[i].exit_code,
                kvi_strerror(status_table[i].st), status_table[i].name);
    }
}

/* Runs a checked command; returns its exit status. */
static int execute(kvi__cli *cli, const struct op_args *o)
{
    kvi_status st;
    kvi_value v = KVI_VALUE_INIT;
    int64_t n = 0;
    switch (o->cmd->op) {
    case OP_STORE:
        st = kvi_store(cli->k, o->id, o->key.p, o->key.len, o->value.p, o->value.len, o->expire_s);
        if (st != KVI_OK)
            return fail(cli, st);
        if (cli->json)
            json_ok();
        return 0;
    case OP_FETCH:
        st = kvi_fetch(cli->k, o->id, o->key.p, o->key.len, &v);
        if (st != KVI_OK)
            return fail(cli, st);
        if (cli->json) {
            fputs("{\"status\":\"ok\",", stdout);
            kvi__cli_json_bytes_field(stdout, "value", v.data, v.len);
            fputs("}\n", stdout);
        } else {
            fwrite(v.data, 1, v.len, stdout);
            if (cli->stdout_tty || cli->in_shell)
                fputc('\n', stdout);
        }
        kvi_value_free(&v);
        return 0;
    case OP_REMOVE:
        st = kvi_remove(cli->k, o->id, o->key.p, o->key.len);
        if (st != KVI_OK)
            return fail(cli, st);
        if (cli->json)
            json_ok();
        return 0;
    case OP_ADD:
    case OP_SUB:
        if (o->cmd->op == OP_ADD)
            st = kvi_add(cli->k, o->id, o->key.p, o->key.len, o->delta, o->expire_s, &n);
        else
            st = kvi_sub(cli->k, o->id, o->key.p, o->key.len, o->delta, o->expire_s, &n);
        if (st != KVI_OK)
            return fail(cli, st);
        print_int_result(cli, "value", n);
        return 0;
    case OP_COUNTER:
        st = kvi_counter_fetch(cli->k, o->id, o->key.p, o->key.len, &n);
        if (st != KVI_OK)
            return fail(cli, st);
        print_int_result(cli, "value", n);
        return 0;
    case OP_RAW: {
        kvi_reply *r = NULL;
        st = kvi_raw_query(cli->k, o->id, o->query.p, o->query.len, &r);
        if (st != KVI_OK)
            return fail(cli, st);
        if (cli->json) {
            fputs("{\"status\":\"ok\",\"reply\":", stdout);
            reply_json(r);
            fputs("}\n", stdout);
        } else {
            reply_text(r, 0);
        }
        int rc = kvi_reply_type_of(r) == KVI_REPLY_ERROR ? kvi__cli_exit_code(KVI_E_BACKEND) : 0;
        kvi_reply_free(r);
        return rc;
    }
    case OP_TTL:
        st = kvi_ttl(cli->k, o->id, o->key.p, o->key.len, &n);
        if (st != KVI_OK)
            return fail(cli, st);
        print_int_result(cli, "ttl", n);
        return 0;
    case OP_KEYS:
        return do_keys(cli, o);
    case OP_REMOVE_CHUNK: {
        uint64_t removed = 0;
        st = kvi_remove_glob(cli->k, o->id, o->glob.p, o->glob.len, &removed);
        if (st != KVI_OK)
            return fail(cli, st);
        if (cli->json)
            printf("{\"status\":\"ok\",\"removed\":%" PRIu64 "}\n", removed);
        else
            printf("%" PRIu64 "\n", removed);
        return 0;
    }
    case OP_PING:
        st = kvi_ping(cli->k, o->id);
        if (st != KVI_OK)
            return fail(cli, st);
        if (cli->json)
            json_ok();
        else
            puts("PONG");
        return 0;
    case OP_STATS:
        return do_stats(cli, o);
    case OP_ENGINES:
        return do_engines(cli);
    case OP_URL:
        return do_url(cli, o);
    case OP_SHELL:
        return kvi__cli_shell(cli);
    case OP_HELP:
        print_help(stdout, cli->in_shell);
        return 0;
    }
    return kvi__cli_exit_code(KVI_E_INTERNAL);
}

int kvi__cli_run_words(kvi__cli *cli, const kvi__cli_arg *words, size_t nwords, const char *line,
                       size_t line_len, const size_t *word_ofs)
{
    struct op_args o;
    if (nwords == 0)
        return 0;
    int rc = parse_args(cli, words, nwords, line, line_len, word_ofs, &o);
    if (rc < 0) {
        rc = execute(cli, &o);
    }
    free(o.owned);
    fflush(stdout);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Options and the store                                                   */

struct source {
    int is_config;
    const char *text;
};

/* Log hook: the library's error messages (a snapshot that could not be
 * written on close, ...) go to standard error; they never hold a password. */
static void log_to_stderr(void *ud, kvi_log_level level, const char *msg)
{
    kvi__cli *cli = ud;
    cli->log_errors++;
    fprintf(stderr, "kvi: %s\n", msg);
}

/* Creates the context and defines the engine ids: the -u/-c sources in
 * order, or the default local store.  Returns -1 or an exit status. */
static int open_store(kvi__cli *cli, const struct source *src, size_t nsrc, int shell)
{
    kvi_status st = kvi_new(&cli->k);
    if (st != KVI_OK) {
        cli->k = NULL;
        kvi__cli_report(cli, st, "creating the context");
        return kvi__cli_exit_code(st);
    }
    kvi_set_log(cli->k, log_to_stderr, cli, KVI_LOG_ERROR);
    if (nsrc == 0) {
        char err[1024] = "";
        st = kvi__cli_state_open(cli->k, shell && isatty(STDIN_FILENO), &cli->state, err,
                                 sizeof err);
        if (st != KVI_OK) {
            kvi__cli_report(cli, st, err);
            return kvi__cli_exit_code(st);
        }
        return -1;
    }
    for (size_t i = 0; i < nsrc; i++) {
        st = src[i].is_config ? kvi_load_config(cli->k, src[i].text)
                              : kvi_add_url(cli->k, src[i].text);
        if (st != KVI_OK)
            return fail(cli, st);
    }
    return -1;
}

/* Frees the context (the local engine writes its snapshot now), then
 * releases the state lock.  An error logged while closing means the data
 * may not have been saved: it becomes the exit status. */
static int close_store(kvi__cli *cli, int rc)
{
    unsigned before = cli->log_errors;
    kvi_free(cli->k);
    cli->k = NULL;
    kvi__cli_state_close(cli->state);
    cli->state = NULL;
    if (cli->log_errors != before && rc < 3)
        rc = kvi__cli_exit_code(KVI_E_IO);
    return rc;
}

static int option_value(int argc, char **argv, int *i, const char *shortopt, const char *longopt,
                        const char **out)
{
    int found = shortopt[1] == 'c' ? 2 : 1;
    const char *a = argv[*i];
    size_t ll = strlen(longopt);
    if (strcmp(a, shortopt) == 0 || strcmp(a, longopt) == 0) {
        if (*i + 1 >= argc)
            return -1;
        *out = argv[++*i];
        return found;
    }
    if (strncmp(a, longopt, ll) == 0 && a[ll] == '=') {
        *out = a + ll + 1;
        return found;
    }
    if (strncmp(a, shortopt, 2) == 0 && a[2] != '\0') {
        *out = a + 2;
        return found;
    }
    return 0;
}

int main(int argc, char **argv)
{
    kvi__cli cli;
    memset(&cli, 0, sizeof cli);
    cli.stdout_tty = isatty(STDOUT_FILENO);
    struct source *src = calloc((size_t)argc + 1, sizeof *src);
    size_t nsrc = 0;
    if (src == NULL) {
        fputs("kvi: out of memory\n", stderr);
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *val;
        int r;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--json") == 0) {
            cli.json = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help(stdout, 0);
            free(src);
            return fflush(stdout) == 0 ? 0 : kvi__cli_exit_code(KVI_E_IO);
        } else if (strcmp(a, "--version") == 0) {
            printf("kvi %s (libkvi %s)\n", KVI_VERSION_STRING, kvi_version());
            free(src);
            return fflush(stdout) == 0 ? 0 : kvi__cli_exit_code(KVI_E_IO);
        } else if ((r = option_value(argc, argv, &i, "-u", "--url", &val)) != 0 ||
                   (r = option_value(argc, argv, &i, "-c", "--config", &val)) != 0) {
            if (r < 0) {
                kvi__cli_arg w = {a, strlen(a)};
                free(src);
                return usage_error(&cli, NULL, "option needs a value", &w);
            }
            src[nsrc].is_config = r == 2;
            src[nsrc].text = val;
            nsrc++;
        } else {
            kvi__cli_arg w = {a, strlen(a)};
            free(src);
            return usage_error(&cli, NULL, "unknown option", &w);
        }
    }
    if (i >= argc) {
        free(src);
        return usage_error(&cli, NULL, "no command given", NULL);
    }
    size_t nwords = (size_t)(argc - i);
    kvi__cli_arg *words = calloc(nwords, sizeof *words);
    if (words == NULL) {
        free(src);
        fputs("kvi: out of memory\n", stderr);
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    for (size_t w = 0; w < nwords; w++) {
        words[w].p = argv[i + (int)w];
        words[w].len = strlen(words[w].p);
    }

    struct op_args o;
    int rc = parse_args(&cli, words, nwords, NULL, 0, NULL, &o);
    if (rc < 0 && (o.cmd->flags & F_STORE) != 0)
        rc = open_store(&cli, src, nsrc, o.cmd->op == OP_SHELL);
    if (rc < 0)
        rc = execute(&cli, &o);
    if (cli.k != NULL)
        rc = close_store(&cli, rc);
    free(o.owned);
    free(words);
    free(src);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kvi: %s: writing standard output: %s\n", kvi_strerror(KVI_E_IO),
                strerror(errno));
        if (rc < 3)
            rc = kvi__cli_exit_code(KVI_E_IO);
    }
    return rc;
}
