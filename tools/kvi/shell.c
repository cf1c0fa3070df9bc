/*
 * shell.c -- reading `kvi shell` input: one command per line with the command line's
 * grammar, plus quoting so that keys and values can hold blanks and any
 * byte.  Line editing and history come from libedit when the build found it
 * (KVI_HAVE_LIBEDIT); otherwise lines are read plainly.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef KVI_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

#include "cli.h"

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int kvi__cli_split(const char *line, size_t len, kvi__cli_arg **words, size_t **ofs, size_t *count,
                   const char **err)
{
    *words = NULL;
    *ofs = NULL;
    *count = 0;
    *err = NULL;
    /* At most one word per two bytes (a byte and a blank) plus one; every
     * word's bytes fit in the line's length plus its NUL. */
    size_t maxw = len / 2 + 1;
    kvi__cli_arg *wv = malloc(maxw * sizeof *wv + 2 * len + 2);
    size_t *ov = malloc(maxw * sizeof *ov);
    if (wv == NULL || ov == NULL) {
        free(wv);
        free(ov);
        return -2;
    }
    char *out = (char *)(wv + maxw);
    size_t n = 0, i = 0;
    for (;;) {
        while (i < len && is_blank(line[i]))
            i++;
        if (i == len || line[i] == '#')
            break;
        char *start = out;
        ov[n] = i;
        while (i < len && !is_blank(line[i])) {
            char c = line[i++];
            if (c == '\'') {
                while (i < len && line[i] != '\'')
                    *out++ = line[i++];
                if (i == len) {
                    *err = "unterminated '";
                    goto bad;
                }
                i++;
            } else if (c == '"') {
                while (i < len && line[i] != '"') {
                    c = line[i++];
                    if (c != '\\') {
                        *out++ = c;
                        continue;
                    }
                    if (i == len)
                        break;
                    c = line[i++];
                    switch (c) {
                    case '"':
                    case '\\':
                    case '\'':
                        *out++ = c;
                        break;
                    case 'n':
                        *out++ = '\n';
                        break;
                    case 'r':
                        *out++ = '\r';
                        break;
                    case 't':
                        *out++ = '\t';
                        break;
                    case '0':
                        *out++ = '\0';
                        break;
                    case 'x': {
                        int hi = i < len ? hex_digit(line[i]) : -1;
                        int lo = i + 1 < len ? hex_digit(line[i + 1]) : -1;
                        if (hi < 0 || lo < 0) {
                            *err = "\\x needs two hex digits";
                            goto bad;
                        }
                        *out++ = (char)(unsigned char)(hi * 16 + lo);
                        i += 2;
                        break;
                    }
                    default:
                        *err = "unknown escape in \"...\"";
                        goto bad;
                    }
                }
                if (i == len) {
                    *err = "unterminated \"";
                    goto bad;
                }
                i++;
            } else if (c == '\\') {
                if (i == len) {
                    *err = "backslash at the end of the line";
                    goto bad;
                }
                *out++ = line[i++];
            } else {
                *out++ = c;
            }
        }
        wv[n].p = start;
        wv[n].len = (size_t)(out - start);
        *out++ = '\0';
        n++;
    }
    *words = wv;
    *ofs = ov;
    *count = n;
    return 0;
bad:
    free(wv);
    free(ov);
    return -1;
}

struct kvi__cli_shell {
    kvi__cli *cli;
    char *buf; /* the line read */
    size_t cap, len;
    kvi__cli_arg *words;
    size_t *ofs;
    int eof; /* the input ended (rather than "quit") */
#ifdef KVI_HAVE_LIBEDIT
    char hist[4096]; /* history file, "" when there is none */
#endif
};

/* Reads one line; returns NULL at the end of input.  sh->len gets its
 * length (it may hold NUL bytes in batch mode). */
static char *read_line(kvi__cli_shell *sh)
{
#ifdef KVI_HAVE_LIBEDIT
    if (sh->cli->interactive) {
        free(sh->buf);
        sh->buf = readline("kvi> ");
        sh->cap = 0;
        if (sh->buf == NULL)
            return NULL;
        sh->len = strlen(sh->buf);
        if (sh->len > 0)
            add_history(sh->buf);
        return sh->buf;
    }
#endif
    if (sh->cli->interactive) {
        fputs("kvi> ", stdout);
        fflush(stdout);
    }
    ssize_t got = getline(&sh->buf, &sh->cap, stdin);
    if (got < 0)
        return NULL;
    sh->len = (size_t)got;
    return sh->buf;
}

static void split_error(const kvi__cli *cli, const char *msg)
{
    if (cli->json) {
        fputs("{\"status\":\"error\",\"error\":\"usage\",\"exit\":2,\"message\":", stdout);
        kvi__cli_json_cstr(stdout, msg);
        fputs("}\n", stdout);
        fflush(stdout);
    }
    fprintf(stderr, "kvi: %s\n", msg);
}

kvi__cli_shell *kvi__cli_shell_open(kvi__cli *cli)
{
    kvi__cli_shell *sh = calloc(1, sizeof *sh);
    if (sh == NULL)
        return NULL;
    sh->cli = cli;
    sh->eof = 1;
    cli->in_shell = 1;
    cli->interactive = isatty(STDIN_FILENO);
#ifdef KVI_HAVE_LIBEDIT
    if (cli->interactive) {
        char dir[4000], err[256];
        if (kvi__cli_state_dir(dir, sizeof dir, 1, err, sizeof err) == 0) {
            snprintf(sh->hist, sizeof sh->hist, "%s/history", dir);
            using_history();
            read_history(sh->hist);
        }
    }
#endif
    if (cli->interactive)
        fputs("kvi shell; \"help\" lists the commands, \"quit\" leaves.\n", stdout);
    return sh;
}

int kvi__cli_shell_read(kvi__cli_shell *sh, kvi__cli_line *ln, int *rc)
{
    memset(ln, 0, sizeof *ln);
    for (;;) {
        free(sh->words);
        free(sh->ofs);
        sh->words = NULL;
        sh->ofs = NULL;
        const char *line = read_line(sh);
        if (line == NULL)
            return 0;
        const char *err;
        size_t n;
        int r = kvi__cli_split(line, sh->len, &sh->words, &sh->ofs, &n, &err);
        if (r == -2) {
            kvi__cli_report(sh->cli, KVI_E_NOMEM, "reading a command");
            *rc = kvi__cli_exit_code(KVI_E_NOMEM);
            sh->eof = 0;
            return 0;
        }
        if (r < 0) {
            split_error(sh->cli, err);
            *rc = KVI_CLI_EXIT_USAGE;
            continue;
        }
        if (n == 0)
            continue;
        if (n == 1 &&
            (strcmp(sh->words[0].p, "quit") == 0 || strcmp(sh->words[0].p, "exit") == 0)) {
            sh->eof = 0;
            return 0;
        }
        ln->text = line;
        ln->len = sh->len;
        ln->words = sh->words;
        ln->ofs = sh->ofs;
        ln->n = n;
        return 1;
    }
}

void kvi__cli_shell_close(kvi__cli_shell *sh)
{
    if (sh == NULL)
        return;
#ifdef KVI_HAVE_LIBEDIT
    if (sh->hist[0] != '\0')
        write_history(sh->hist);
#endif
    if (sh->cli->interactive && sh->eof)
        fputc('\n', stdout);
    free(sh->words);
    free(sh->ofs);
    free(sh->buf);
    free(sh);
}
