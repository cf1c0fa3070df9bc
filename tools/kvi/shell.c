/*
 * shell.c -- `kvi shell`: one command per line with the command line's
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

/* Reads one line; returns NULL at the end of input.  *len gets its length
 * (it may hold NUL bytes in batch mode). */
static char *read_line(kvi__cli *cli, char **buf, size_t *cap, size_t *len)
{
#ifdef KVI_HAVE_LIBEDIT
    if (cli->interactive) {
        free(*buf);
        *buf = readline("kvi> ");
        *cap = 0;
        if (*buf == NULL)
            return NULL;
        *len = strlen(*buf);
        if (*len > 0)
            add_history(*buf);
        return *buf;
    }
#endif
    if (cli->interactive) {
        fputs("kvi> ", stdout);
        fflush(stdout);
    }
    ssize_t got = getline(buf, cap, stdin);
    if (got < 0)
        return NULL;
    *len = (size_t)got;
    return *buf;
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

int kvi__cli_shell(kvi__cli *cli)
{
    cli->in_shell = 1;
    cli->interactive = isatty(STDIN_FILENO);
    int rc = 0;
    char *buf = NULL;
    size_t cap = 0, len = 0;
#ifdef KVI_HAVE_LIBEDIT
    char hist[4096] = "";
    if (cli->interactive) {
        char dir[4000], err[256];
        if (kvi__cli_state_dir(dir, sizeof dir, 1, err, sizeof err) == 0) {
            snprintf(hist, sizeof hist, "%s/history", dir);
            using_history();
            read_history(hist);
        }
    }
#endif
    if (cli->interactive)
        fputs("kvi shell; \"help\" lists the commands, \"quit\" leaves.\n", stdout);
    const char *line;
    int eof = 1;
    while ((line = read_line(cli, &buf, &cap, &len)) != NULL) {
        kvi__cli_arg *words;
        size_t *ofs, n;
        const char *err;
        int r = kvi__cli_split(line, len, &words, &ofs, &n, &err);
        if (r == -2) {
            kvi__cli_report(cli, KVI_E_NOMEM, "reading a command");
            rc = kvi__cli_exit_code(KVI_E_NOMEM);
            break;
        }
        if (r < 0) {
            split_error(cli, err);
            rc = KVI_CLI_EXIT_USAGE;
            continue;
        }
        if (n == 1 && (strcmp(words[0].p, "quit") == 0 || strcmp(words[0].p, "exit") == 0)) {
            free(words);
            free(ofs);
            eof = 0;
            break;
        }
        if (n > 0)
            rc = kvi__cli_run_words(cli, words, n, line, len, ofs);
        free(words);
        free(ofs);
    }
#ifdef KVI_HAVE_LIBEDIT
    if (hist[0] != '\0')
        write_history(hist);
#endif
    if (cli->interactive && eof)
        fputc('\n', stdout);
    free(buf);
    return rc;
}
