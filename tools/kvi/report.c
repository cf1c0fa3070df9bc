/*
 * report.c -- how the kvi command tells what went wrong: the exit status of
 * every kvi_status (from the one table in kvi.h), error lines and usage
 * errors, as text on standard error and, with --json, as a JSON document on
 * standard output.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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

void kvi__cli_print_exit_codes(FILE *f)
{
    for (size_t i = 0; i < NSTATUS; i++) {
        if (status_table[i].exit_code < 3)
            continue;
        fprintf(f, "  %-3d %s (KVI_%s)\n", status_table[i].exit_code,
                kvi_strerror(status_table[i].st), status_table[i].name);
    }
}

void kvi__cli_report(const kvi__cli *cli, kvi_status st, const char *detail)
{
    if (cli->quiet)
        return;
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

int kvi__cli_fail(const kvi__cli *cli, kvi_status st)
{
    /* NOT_FOUND is an outcome, not a failure: there is no detail message
     * for it (kvi_errmsg may still hold an older one). */
    kvi__cli_report(cli, st, cli->k != NULL && st != KVI_NOT_FOUND ? kvi_errmsg(cli->k) : NULL);
    return kvi__cli_exit_code(st);
}

static void usage_line(const kvi__cli *cli, const kvi__cli_command *cmd)
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

int kvi__cli_usage_error(const kvi__cli *cli, const kvi__cli_command *cmd, const char *what,
                         const kvi__cli_arg *arg)
{
    if (cli->quiet)
        return KVI_CLI_EXIT_USAGE;
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
