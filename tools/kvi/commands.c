/*
 * commands.c -- the command table of the kvi command, the checking of a
 * command's arguments against its row, and running one checked command
 * through the row's handler.  Arguments are checked completely (arity,
 * numbers, a value read from standard input) before the store is opened,
 * so a usage error never writes anything.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kvi/engine.h"

static int cmd_help(kvi__cli *cli, const kvi__cli_args *a)
{
    (void)a;
    return kvi__cli_print_help(cli, cli->in_shell);
}

#define ID KVI_CLI_K_ID
#define KEY KVI_CLI_K_KEY

/* The commands, in the order of --help. */
static const kvi__cli_command commands[] = {
    {"store",
     "cache_store",
     "ID KEY VALUE [EXPIRE] [--nx]",
     3,
     1,
     {ID, KEY, KVI_CLI_K_VALUE, KVI_CLI_K_EXPIRE},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_store,
     "store VALUE under KEY (--nx: only if absent)",
     KVI_CLI_O_NX},
    {"fetch",
     "cache_fetch",
     "ID KEY",
     2,
     0,
     {ID, KEY},
     KVI_CLI_F_STORE | KVI_CLI_F_LOOK,
     kvi__cli_cmd_fetch,
     "write the value of KEY",
     0},
    {"remove",
     "cache_remove",
     "ID KEY",
     2,
     0,
     {ID, KEY},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_remove,
     "remove KEY",
     0},
    {"add",
     "cache_add",
     "ID KEY DELTA [EXPIRE] [--min N] [--max N]",
     3,
     1,
     {ID, KEY, KVI_CLI_K_DELTA, KVI_CLI_K_EXPIRE},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_add,
     "add DELTA to a counter (only within --min/--max)",
     KVI_CLI_O_BOUNDS},
    {"sub",
     "cache_sub",
     "ID KEY DELTA [EXPIRE] [--min N] [--max N]",
     3,
     1,
     {ID, KEY, KVI_CLI_K_DELTA, KVI_CLI_K_EXPIRE},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_sub,
     "subtract DELTA from a counter (only within --min/--max)",
     KVI_CLI_O_BOUNDS},
    {"counter",
     "cache_counter_fetch",
     "ID KEY",
     2,
     0,
     {ID, KEY},
     KVI_CLI_F_STORE | KVI_CLI_F_LOOK,
     kvi__cli_cmd_counter,
     "print a counter",
     0},
    {"raw",
     "cache_raw_query",
     "ID QUERY",
     2,
     0,
     {ID, KVI_CLI_K_QUERY},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_raw,
     "run a query in the engine's language",
     0},
    {"ttl",
     NULL,
     "ID KEY",
     2,
     0,
     {ID, KEY},
     KVI_CLI_F_STORE | KVI_CLI_F_LOOK,
     kvi__cli_cmd_ttl,
     "print remaining seconds (-1: none)",
     0},
    {"keys",
     NULL,
     "ID [GLOB]",
     1,
     1,
     {ID, KVI_CLI_K_GLOB},
     KVI_CLI_F_STORE | KVI_CLI_F_LOOK,
     kvi__cli_cmd_keys,
     "list keys matching GLOB",
     0},
    {"remove-chunk",
     "cache_remove_chunk",
     "ID GLOB",
     2,
     0,
     {ID, KVI_CLI_K_GLOB},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_remove_chunk,
     "remove keys matching GLOB",
     0},
    {"ping",
     NULL,
     "ID",
     1,
     0,
     {ID},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_ping,
     "check that the store answers",
     0},
    {"stats",
     NULL,
     "[ID] [--interval N [--count M]] [--format text|prometheus]",
     0,
     1,
     {ID},
     KVI_CLI_F_STORE | KVI_CLI_F_LOOK,
     kvi__cli_cmd_stats,
     "print statistics (a shared collection: every process's, with the hit ratio); every N "
     "seconds with rates, M times",
     KVI_CLI_O_STATS},
    {"engines",
     NULL,
     "",
     0,
     0,
     {KVI_CLI_K_NONE},
     KVI_CLI_F_STORE,
     kvi__cli_cmd_engines,
     "list engine ids and capabilities",
     0},
    {"url",
     NULL,
     "URL",
     1,
     0,
     {KVI_CLI_K_URL},
     0,
     kvi__cli_cmd_url,
     "parse URL and show its parts",
     0},
    {"shell",
     NULL,
     "",
     0,
     0,
     {KVI_CLI_K_NONE},
     KVI_CLI_F_STORE | KVI_CLI_F_SHELL,
     NULL,
     "run commands: interactive with history on a terminal, else one per line from standard "
     "input",
     0},
    {"pipe",
     NULL,
     "ID [--batch N]",
     1,
     0,
     {ID},
     KVI_CLI_F_STORE | KVI_CLI_F_PIPE,
     NULL,
     "run standard input's lines (shell syntax, no ID) on ID in batches",
     KVI_CLI_O_BATCH},
    {"help", NULL, "", 0, 0, {KVI_CLI_K_NONE}, 0, cmd_help, NULL, 0},
};

#undef ID
#undef KEY

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* ---------------------------------------------------------------------- */
/* Argument checking                                                       */

/* Strict decimal int64, the library's one definition of a counter's text
 * (kvi_parse_int64): an optional '-', digits, no '+', no leading zeros, no
 * "-0", no blanks (a NUL is no digit either). */
static int parse_i64(const kvi__cli_arg *a, int64_t *out)
{
    return kvi_parse_int64(a->p, a->len, out) ? 0 : -1;
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

static const kvi__cli_command *find_command(const kvi__cli_arg *w)
{
    if (has_nul(w))
        return NULL;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const kvi__cli_command *c = &commands[i];
        if (strcmp(w->p, c->name) == 0 || (c->alias != NULL && strcmp(w->p, c->alias) == 0))
            return c;
    }
    return NULL;
}

static int word_is(const kvi__cli_arg *w, const char *s)
{
    return w->len == strlen(s) && memcmp(w->p, s, w->len) == 0;
}

/* Takes the flags of cmd (--min N, --max N, --nx) out of the words after its
 * required arguments into o and leaves the positional words in pos[0..*npos).
 * Returns -1 when all is well, else the exit status of the usage error. */
static int take_flags(kvi__cli *cli, const kvi__cli_command *cmd, const kvi__cli_arg *a,
                      size_t nargs, const kvi__cli_arg **pos, size_t *npos, kvi__cli_args *o)
{
    size_t np = 0;
    for (size_t i = 0; i < nargs; i++) {
        const kvi__cli_arg *w = &a[i];
        int is_min = word_is(w, "--min"), is_max = word_is(w, "--max");
        if (np >= cmd->nreq && (cmd->opts & KVI_CLI_O_BOUNDS) && (is_min || is_max)) {
            int *has = is_min ? &o->has_min : &o->has_max;
            if (*has)
                return kvi__cli_usage_error(cli, cmd, "option given twice", w);
            if (i + 1 == nargs || parse_i64(&a[i + 1], is_min ? &o->min : &o->max) != 0)
                return kvi__cli_usage_error(cli, cmd,
                                            is_min ? "--min needs a 64-bit integer"
                                                   : "--max needs a 64-bit integer",
                                            i + 1 < nargs ? &a[i + 1] : NULL);
            *has = 1;
            i++;
        } else if (np >= cmd->nreq && (cmd->opts & KVI_CLI_O_BATCH) && word_is(w, "--batch")) {
            if (i + 1 == nargs || parse_i64(&a[i + 1], &o->batch) != 0 || o->batch < 1 ||
                o->batch > KVI_CLI_PIPE_BATCH_MAX)
                return kvi__cli_usage_error(cli, cmd, "--batch needs a whole number 1..1000000",
                                            i + 1 < nargs ? &a[i + 1] : NULL);
            i++;
        } else if ((cmd->opts & KVI_CLI_O_STATS) &&
                   (word_is(w, "--interval") || word_is(w, "--count"))) {
            int is_interval = word_is(w, "--interval");
            int64_t *v = is_interval ? &o->interval_s : &o->count;
            int64_t max = is_interval ? KVI_CLI_INTERVAL_MAX : INT64_MAX;
            if (*v != 0)
                return kvi__cli_usage_error(cli, cmd, "option given twice", w);
            if (i + 1 == nargs || parse_i64(&a[i + 1], v) != 0 || *v < 1 || *v > max)
                return kvi__cli_usage_error(cli, cmd,
                                            is_interval ? "--interval needs whole seconds 1..86400"
                                                        : "--count needs a whole number >= 1",
                                            i + 1 < nargs ? &a[i + 1] : NULL);
            i++;
        } else if ((cmd->opts & KVI_CLI_O_STATS) && word_is(w, "--format")) {
            if (o->has_format)
                return kvi__cli_usage_error(cli, cmd, "option given twice", w);
            o->has_format = 1;
            if (i + 1 < nargs && word_is(&a[i + 1], "prometheus"))
                o->format = KVI_CLI_FORMAT_PROMETHEUS;
            else if (i + 1 < nargs && word_is(&a[i + 1], "text"))
                o->format = KVI_CLI_FORMAT_TEXT;
            else
                return kvi__cli_usage_error(cli, cmd, "--format needs text or prometheus",
                                            i + 1 < nargs ? &a[i + 1] : NULL);
            i++;
        } else if (np >= cmd->nreq && (cmd->opts & KVI_CLI_O_NX) && word_is(w, "--nx")) {
            if (o->nx)
                return kvi__cli_usage_error(cli, cmd, "option given twice", w);
            o->nx = 1;
        } else if (np == cmd->nreq + cmd->nopt) {
            return kvi__cli_usage_error(cli, cmd, "too many arguments", NULL);
        } else {
            pos[np++] = w;
        }
    }
    if (o->min > o->max)
        return kvi__cli_usage_error(cli, cmd, "--min is greater than --max", NULL);
    if (o->count != 0 && o->interval_s == 0)
        return kvi__cli_usage_error(cli, cmd, "--count needs --interval", NULL);
    if (o->format == KVI_CLI_FORMAT_PROMETHEUS && cli->json)
        return kvi__cli_usage_error(cli, cmd, "--format prometheus does not go with --json", NULL);
    *npos = np;
    return -1;
}

/* A word the tokenizer reads back as itself without quotes. */
static int plain_word(const kvi__cli_arg *w)
{
    if (w->len == 0)
        return 0;
    for (size_t i = 0; i < w->len; i++) {
        unsigned char c = (unsigned char)w->p[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '\\')
            return 0;
    }
    return 1;
}

/*
 * Joins words[0..n) with blanks into a malloc'd *out (length *len),
 * double-quoting every word that is not plain, with the escapes \" \\ and
 * \xHH, so that kvi_split_words() gives back exactly these words.  Returns
 * 0, or -1 when memory runs out.
 */
static int join_words(const kvi__cli_arg *words, size_t n, char **out, size_t *len)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += words[i].len * 4 + 3;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const kvi__cli_arg *w = &words[i];
        if (i > 0)
            buf[o++] = ' ';
        if (plain_word(w)) {
            memcpy(buf + o, w->p, w->len);
            o += w->len;
            continue;
        }
        buf[o++] = '"';
        for (size_t j = 0; j < w->len; j++) {
            unsigned char c = (unsigned char)w->p[j];
            if (c == '"' || c == '\\') {
                buf[o++] = '\\';
                buf[o++] = (char)c;
            } else if (c < ' ' || c >= 0x7f) {
                buf[o++] = '\\';
                buf[o++] = 'x';
                buf[o++] = hex[c >> 4];
                buf[o++] = hex[c & 15];
            } else {
                buf[o++] = (char)c;
            }
        }
        buf[o++] = '"';
    }
    buf[o] = '\0';
    *out = buf;
    *len = o;
    return 0;
}

int kvi__cli_parse(kvi__cli *cli, const kvi__cli_arg *words, size_t n, kvi__cli_args *o)
{
    memset(o, 0, sizeof *o);
    const kvi__cli_command *cmd = find_command(&words[0]);
    if (cmd == NULL)
        return kvi__cli_usage_error(cli, NULL, "unknown command", &words[0]);
    o->cmd = cmd;
    size_t nargs = n - 1;
    const kvi__cli_arg *a = words + 1;
    /* In the shell several words after the ID of raw are its query: joined
     * again, quoted where needed, so that the engine's tokenizer (the one
     * that split the line) reads back the same words. */
    kvi__cli_arg rest = {NULL, 0};
    int use_rest = 0;
    if (cli->in_shell && nargs > 2 && cmd->kinds[1] == KVI_CLI_K_QUERY) {
        if (join_words(a + 1, nargs - 1, &o->owned, &rest.len) != 0) {
            kvi__cli_report(cli, KVI_E_NOMEM, "joining the words of the query");
            return kvi__cli_exit_code(KVI_E_NOMEM);
        }
        rest.p = o->owned;
        nargs = 2;
        use_rest = 1;
    }
    o->min = INT64_MIN;
    o->max = INT64_MAX;
    o->batch = KVI_CLI_PIPE_BATCH;
    const kvi__cli_arg *pos[KVI_CLI_MAX_ARGS];
    if (cmd->opts != 0) {
        int rc = take_flags(cli, cmd, a, nargs, pos, &nargs, o);
        if (rc >= 0)
            return rc;
    } else if (nargs <= KVI_CLI_MAX_ARGS) {
        for (size_t i = 0; i < nargs; i++)
            pos[i] = &a[i];
    }
    if (nargs < cmd->nreq)
        return kvi__cli_usage_error(cli, cmd, "missing arguments", NULL);
    if (nargs > cmd->nreq + cmd->nopt)
        return kvi__cli_usage_error(cli, cmd, "too many arguments", NULL);
    if ((cmd->flags & (KVI_CLI_F_SHELL | KVI_CLI_F_PIPE)) != 0 && cli->in_shell)
        return kvi__cli_usage_error(cli, cmd, "already in the shell", NULL);
    o->expire_s = 0;
    for (size_t i = 0; i < nargs; i++) {
        const kvi__cli_arg *w = pos[i];
        if (use_rest && i == 1)
            w = &rest;
        switch (cmd->kinds[i]) {
        case KVI_CLI_K_ID:
            if (w->len == 0 || has_nul(w))
                return kvi__cli_usage_error(cli, cmd, "bad engine id", w);
            o->id = w->p;
            break;
        case KVI_CLI_K_KEY:
            o->key = *w;
            break;
        case KVI_CLI_K_VALUE:
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
        case KVI_CLI_K_DELTA:
            if (parse_i64(w, &o->delta) != 0)
                return kvi__cli_usage_error(cli, cmd, "DELTA is not a 64-bit integer", w);
            break;
        case KVI_CLI_K_EXPIRE:
            if (parse_i64(w, &o->expire_s) != 0 || o->expire_s < 0 || w->p[0] == '-')
                return kvi__cli_usage_error(cli, cmd, "EXPIRE is not a non-negative integer", w);
            break;
        case KVI_CLI_K_GLOB:
            o->glob = *w;
            o->has_glob = 1;
            break;
        case KVI_CLI_K_QUERY:
            o->query = *w;
            break;
        case KVI_CLI_K_URL:
            if (has_nul(w))
                return kvi__cli_usage_error(cli, cmd, "bad URL", NULL);
            o->url = *w;
            break;
        case KVI_CLI_K_NONE:
            break;
        }
    }
    return -1;
}

void kvi__cli_args_free(kvi__cli_args *a)
{
    free(a->owned);
    a->owned = NULL;
}

/* ---------------------------------------------------------------------- */
/* Help and running                                                        */

void kvi__cli_help(FILE *f, int in_shell)
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
        const kvi__cli_command *c = &commands[i];
        if (c->what == NULL || (in_shell && (c->flags & (KVI_CLI_F_SHELL | KVI_CLI_F_PIPE)) != 0))
            continue;
        char head[96];
        snprintf(head, sizeof head, "%s %s", c->name, c->args);
        if (strlen(head) > 29) /* a long synopsis gets a line of its own */
            fprintf(f, "  %s\n  %-29s %s", head, "", c->what);
        else
            fprintf(f, "  %-29s %s", head, c->what);
        if (c->alias != NULL)
            fprintf(f, " (alias %s)", c->alias);
        fputc('\n', f);
    }
    if (in_shell) {
        fputs("  help                          this list\n"
              "  quit, exit                    leave the shell\n"
              "Words are separated by blanks (the rules of raw queries); \"a b\" and 'a b'\n"
              "quote, and inside \"...\" the escapes \\\" \\\\ \\n \\r \\t \\xHH give any byte;\n"
              "a word starting with # (unquoted) starts a comment to the end of the line.\n"
              "When several words follow the ID of raw, they are its QUERY, quoted again\n"
              "where needed: the engine reads them back.\n",
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
          "$XDG_STATE_HOME/kvi/local.kvis (default ~/.local/state/kvi); a command\n"
          "waits up to $KVI_LOCK_TIMEOUT seconds (default 30) while another kvi uses\n"
          "it.  In the shell Ctrl-C cancels the line; SIGTERM/SIGHUP save and leave.\n"
          "\n"
          "stats: ops, errors and misses count this process's calls, except on a\n"
          "shared collection (local://?shm=NAME), where ops, errors, misses and hits\n"
          "are the totals of every attached process (run kvi as the segment's owner,\n"
          "e.g. sudo -u kamailio kvi -u 'local://?shm=NAME' stats local);\n"
          "hit_ratio = hits / (hits + misses).  --interval N prints a block every N\n"
          "seconds with per-second rates over the interval (until --count M blocks or\n"
          "Ctrl-C); --format prometheus prints the Prometheus text format\n"
          "(kvi_ops_total{engine=\"local\",id=\"local\"} ...).\n"
          "\n"
          "Exit status:\n"
          "  0   success\n"
          "  1   key not found\n"
          "  2   usage error\n",
          f);
    kvi__cli_print_exit_codes(f);
}

int kvi__cli_execute(kvi__cli *cli, const kvi__cli_args *a)
{
    /* The shell (no handler) is run by main, never through here. */
    if (a->cmd->run == NULL)
        return kvi__cli_exit_code(KVI_E_INTERNAL);
    return a->cmd->run(cli, a);
}

int kvi__cli_run_words(kvi__cli *cli, const kvi__cli_arg *words, size_t nwords)
{
    kvi__cli_args a;
    if (nwords == 0)
        return 0;
    int rc = kvi__cli_parse(cli, words, nwords, &a);
    if (rc < 0)
        rc = kvi__cli_execute(cli, &a);
    kvi__cli_args_free(&a);
    fflush(stdout);
    return rc;
}

int kvi__cli_print_help(const kvi__cli *cli, int in_shell)
{
    if (!cli->json) {
        kvi__cli_help(stdout, in_shell);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m == NULL) {
        kvi__cli_report(cli, KVI_E_NOMEM, "writing the help");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    kvi__cli_help(m, in_shell);
    if (fclose(m) != 0 || text == NULL) {
        free(text);
        kvi__cli_report(cli, KVI_E_NOMEM, "writing the help");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    fputs("{\"status\":\"ok\",\"help\":", stdout);
    kvi__cli_json_string(stdout, text, len);
    fputs("}\n", stdout);
    free(text);
    return 0;
}

void kvi__cli_print_version(const kvi__cli *cli)
{
    if (cli->json)
        printf("{\"status\":\"ok\",\"version\":\"%s\",\"libkvi\":\"%s\"}\n", KVI_VERSION_STRING,
               kvi_version());
    else
        printf("kvi %s (libkvi %s)\n", KVI_VERSION_STRING, kvi_version());
}
