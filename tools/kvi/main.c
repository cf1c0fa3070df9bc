/*
 * main.c -- the `kvi` command: its options, the store they define, and
 * then one command or the shell loop.
 *
 *     kvi [-u URL]... [-c FILE] [--json] COMMAND ARGS
 *
 * The command is checked (commands.c) before the store is opened, so a
 * usage error never writes anything.  See docs/cli.md and docs/kvi.1.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

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

/* A command that only looks (KVI_CLI_F_LOOK) attaches to a shared local
 * collection and never creates one: a local URL with shm= and without its
 * own shm_create or shm_readonly gets "&shm_create=no", so a mistyped name or
 * a look before the server's first request is "no such shared collection"
 * instead of a new segment that would then lock the server out.  The URL is
 * read by the library's own parser (percent-encoded names included); one it
 * refuses is left to kvi_add_url to report.  Returns url itself or a copy in
 * buf (NULL when it does not fit). */
static const char *look_only_url(const char *url, char *buf, size_t buflen)
{
    kvi_url *u = NULL;
    char err[256];
    if (kvi_url_parse(url, &u, err, sizeof err) != KVI_OK)
        return url;
    int add = strcmp(u->scheme, "local") == 0 && kvi_url_option_get(u, "shm") != NULL &&
              kvi_url_option_get(u, "shm_create") == NULL &&
              kvi_url_option_get(u, "shm_readonly") == NULL;
    kvi_url_free(u);
    if (!add)
        return url;
    size_t len = strlen(url);
    const char *sep = url[len - 1] == '?' || url[len - 1] == '&' ? "" : "&";
    int n = snprintf(buf, buflen, "%s%sshm_create=no", url, sep);
    return n >= 0 && (size_t)n < buflen ? buf : NULL;
}

/* Creates the context and defines the engine ids: the -u/-c sources in
 * order, or the default local store.  Returns -1 or an exit status. */
static int open_store(kvi__cli *cli, const struct source *src, size_t nsrc,
                      const kvi__cli_command *cmd)
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
        int shell = (cmd->flags & KVI_CLI_F_SHELL) != 0;
        st = kvi__cli_state_open(cli->k, shell && isatty(STDIN_FILENO), &cli->state, err,
                                 sizeof err);
        if (st != KVI_OK) {
            kvi__cli_report(cli, st, err);
            return kvi__cli_exit_code(st);
        }
        return -1;
    }
    for (size_t i = 0; i < nsrc; i++) {
        const char *url = src[i].text;
        char look[4096];
        if (!src[i].is_config && (cmd->flags & KVI_CLI_F_LOOK) != 0 &&
            (url = look_only_url(url, look, sizeof look)) == NULL) {
            kvi__cli_report(cli, KVI_E_BAD_URL, "a URL longer than 4 KiB");
            return kvi__cli_exit_code(KVI_E_BAD_URL);
        }
        st = src[i].is_config ? kvi_load_config(cli->k, src[i].text) : kvi_add_url(cli->k, url);
        if (st != KVI_OK)
            return kvi__cli_fail(cli, st);
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

/* Runs the shell: each command read is checked and run like one given on
 * the command line.  Returns the exit status of the last command (0 when
 * none). */
static int run_shell(kvi__cli *cli)
{
    kvi__cli_shell *sh = kvi__cli_shell_open(cli, 0);
    if (sh == NULL) {
        kvi__cli_report(cli, KVI_E_NOMEM, "starting the shell");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    int rc = 0;
    kvi__cli_line ln;
    while (kvi__cli_shell_read(sh, &ln, &rc))
        rc = kvi__cli_run_words(cli, ln.words, ln.n);
    kvi__cli_shell_close(sh);
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
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 ||
                   strcmp(a, "--version") == 0) {
            /* --json counts also after them: kvi --help --json. */
            for (int j = i + 1; j < argc && argv[j][0] == '-' && strcmp(argv[j], "--") != 0; j++)
                if (strcmp(argv[j], "--json") == 0)
                    cli.json = 1;
            r = 0;
            if (strcmp(a, "--version") == 0)
                kvi__cli_print_version(&cli);
            else
                r = kvi__cli_print_help(&cli, 0);
            free(src);
            if (fflush(stdout) != 0)
                return kvi__cli_exit_code(KVI_E_IO);
            return r;
        } else if ((r = option_value(argc, argv, &i, "-u", "--url", &val)) != 0 ||
                   (r = option_value(argc, argv, &i, "-c", "--config", &val)) != 0) {
            if (r < 0) {
                kvi__cli_arg w = {a, strlen(a)};
                free(src);
                return kvi__cli_usage_error(&cli, NULL, "option needs a value", &w);
            }
            src[nsrc].is_config = r == 2;
            src[nsrc].text = val;
            nsrc++;
        } else {
            kvi__cli_arg w = {a, strlen(a)};
            free(src);
            return kvi__cli_usage_error(&cli, NULL, "unknown option", &w);
        }
    }
    if (i >= argc) {
        free(src);
        return kvi__cli_usage_error(&cli, NULL, "no command given", NULL);
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

    kvi__cli_args a;
    int rc = kvi__cli_parse(&cli, words, nwords, &a);
    int shell = rc < 0 && (a.cmd->flags & KVI_CLI_F_SHELL) != 0;
    if (rc < 0 && (a.cmd->flags & KVI_CLI_F_STORE) != 0) {
        /* From here on SIGINT/SIGTERM/SIGHUP end the run through the
         * close below, which saves the default store. */
        kvi__cli_signals_install();
        rc = open_store(&cli, src, nsrc, a.cmd);
    }
    if (rc < 0 && (a.cmd->flags & KVI_CLI_F_PIPE) != 0)
        rc = kvi__cli_run_pipe(&cli, &a);
    else if (rc < 0)
        rc = shell ? run_shell(&cli) : kvi__cli_execute(&cli, &a);
    int saved = cli.state != NULL;
    if (cli.k != NULL)
        rc = close_store(&cli, rc);
    int sig = kvi__cli_signal();
    if (shell && sig != 0) {
        fprintf(stderr, "kvi: %s: %s\n", strsignal(sig),
                saved ? "the default store was saved, leaving the shell" : "leaving the shell");
        rc = 128 + sig;
    }
    kvi__cli_args_free(&a);
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
