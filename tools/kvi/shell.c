/*
 * shell.c -- reading `kvi shell` input: one command per line with the
 * command line's grammar, split into words by the library's one tokenizer
 * (kvi_split_words: the quoting rules of raw queries, "a b", 'a b', \xHH),
 * so that keys and values can hold blanks and any byte; a word starting
 * with an unquoted # starts a comment to the end of the line.  Line editing and history come from
 * libedit when the build found it (KVI_HAVE_LIBEDIT); otherwise lines are read plainly.  Input is
 * read only once poll() says it is there, so a signal is seen at once: Ctrl-C on a terminal cancels
 * the line being typed; SIGTERM, SIGHUP (and SIGINT in batch mode) end the shell, and main saves
 * the store.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef KVI_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

#include "cli.h"
#include "kvi/engine.h"

struct kvi__cli_shell {
    kvi__cli *cli;
    char *buf; /* the line read */
    size_t cap, len;
    char **w;     /* the words of the line (kvi_split_words) ... */
    size_t *wlen; /* ... their lengths ... */
    size_t nw;    /* ... and how many */
    kvi__cli_arg *words;
    int eof;        /* the input ended or a signal came (rather than "quit") */
    char *in;       /* plain reader: bytes read from fd 0 ... */
    size_t in_used; /* ... of which this many are consumed ... */
    size_t in_len, in_cap;
    int in_eof; /* ... and the end of input was seen */
    int pipe;   /* bad lines are returned to the caller, not reported */
#ifdef KVI_HAVE_LIBEDIT
    char *edit_line; /* the line libedit's callback got (NULL at end of input) */
    int edit_done;
    char hist[4096]; /* history file, "" when there is none */
#endif
};

/* Waits until standard input is readable.  Returns 1 then (or on an error
 * that read() will report), 0 when a signal is noted (kvi__cli_signal()).
 * The signals are blocked except inside ppoll(), so one that arrives just
 * before the wait is not missed. */
static int wait_input(void)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old);
    int ready = 0;
    while (kvi__cli_signal() == 0) {
        struct pollfd p = {STDIN_FILENO, POLLIN, 0};
        int r = ppoll(&p, 1, NULL, &old);
        if (r > 0 || (r < 0 && errno != EINTR)) {
            ready = 1;
            break;
        }
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return ready;
}

/* The plain reader (batch mode, or a terminal without libedit): the next
 * line from fd 0, newline included, into sh->buf.  1 for a line, 0 at the
 * end of input, -1 when a signal came first. */
static int read_plain(kvi__cli_shell *sh)
{
    for (;;) {
        char *from = sh->in != NULL ? sh->in + sh->in_used : NULL;
        size_t avail = sh->in_len - sh->in_used;
        char *nl = avail > 0 ? memchr(from, '\n', avail) : NULL;
        if (nl != NULL || (sh->in_eof && avail > 0)) {
            size_t n = nl != NULL ? (size_t)(nl - from) + 1 : avail;
            if (n + 1 > sh->cap) {
                char *nb = realloc(sh->buf, n + 1);
                if (nb == NULL)
                    return 0;
                sh->buf = nb;
                sh->cap = n + 1;
            }
            memcpy(sh->buf, from, n);
            sh->buf[n] = '\0';
            sh->len = n;
            sh->in_used += n;
            return 1;
        }
        if (sh->in_eof)
            return 0;
        if (avail > 0)
            memmove(sh->in, from, avail);
        sh->in_len = avail;
        sh->in_used = 0;
        if (sh->in_len == sh->in_cap) {
            size_t ncap = sh->in_cap ? sh->in_cap * 2 : 4096;
            char *ni = realloc(sh->in, ncap);
            if (ni == NULL)
                return 0;
            sh->in = ni;
            sh->in_cap = ncap;
        }
        if (!wait_input())
            return -1;
        ssize_t got = read(STDIN_FILENO, sh->in + sh->in_len, sh->in_cap - sh->in_len);
        if (got > 0)
            sh->in_len += (size_t)got;
        else if (got == 0 || errno != EINTR)
            sh->in_eof = 1;
    }
}

#ifdef KVI_HAVE_LIBEDIT
/* libedit's line callback has no user pointer. */
static kvi__cli_shell *edit_shell;

static void edit_got_line(char *line)
{
    edit_shell->edit_line = line;
    edit_shell->edit_done = 1;
    rl_callback_handler_remove();
}

/* Line editing: libedit's callback interface, fed one character at a time
 * once poll() says there is one, so that a signal is seen at once.  1 for a
 * line, 0 at the end of input, -1 for a signal other than Ctrl-C's. */
static int read_edit(kvi__cli_shell *sh)
{
    edit_shell = sh;
    sh->edit_done = 0;
    sh->edit_line = NULL;
    rl_callback_handler_install("kvi> ", edit_got_line);
    while (!sh->edit_done) {
        if (wait_input()) {
            rl_callback_read_char();
            continue;
        }
        int sig = kvi__cli_signal();
        /* Ctrl-C: the line typed so far is dropped, a fresh prompt. */
        rl_replace_line("", 0);
        rl_callback_handler_remove();
        if (sig != SIGINT)
            return -1;
        fputs("^C\n", stdout);
        fflush(stdout);
        kvi__cli_signal_clear();
        rl_callback_handler_install("kvi> ", edit_got_line);
    }
    if (sh->edit_line == NULL)
        return 0;
    free(sh->buf);
    sh->buf = sh->edit_line;
    sh->len = strlen(sh->buf);
    sh->cap = sh->len + 1;
    if (sh->len > 0)
        add_history(sh->buf);
    return 1;
}
#endif

/* Reads one line into sh->buf/sh->len (it may hold NUL bytes in batch
 * mode).  1 for a line, 0 at the end of input, -1 when a signal ends the
 * shell.  On a terminal Ctrl-C cancels the line being typed and prompts
 * again, as in redis-cli and psql. */
static int read_line(kvi__cli_shell *sh)
{
#ifdef KVI_HAVE_LIBEDIT
    if (sh->cli->interactive)
        return read_edit(sh);
#endif
    for (;;) {
        if (sh->cli->interactive) {
            fputs("kvi> ", stdout);
            fflush(stdout);
        }
        int r = read_plain(sh);
        if (r >= 0)
            return r;
        if (!sh->cli->interactive || kvi__cli_signal() != SIGINT)
            return -1;
        /* The terminal dropped the partial line (its ISIG flushes input). */
        fputs("^C\n", stdout);
        kvi__cli_signal_clear();
    }
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

int kvi__cli_shell_bad_line(const kvi__cli *cli)
{
    split_error(cli, "bad quoting: a quote is not closed, or a closing quote is not followed by a "
                     "blank");
    return KVI_CLI_EXIT_USAGE;
}

kvi__cli_shell *kvi__cli_shell_open(kvi__cli *cli, int pipe)
{
    kvi__cli_shell *sh = calloc(1, sizeof *sh);
    if (sh == NULL)
        return NULL;
    sh->cli = cli;
    sh->eof = 1;
    cli->in_shell = 1;
    cli->interactive = !pipe && isatty(STDIN_FILENO);
    sh->pipe = pipe;
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

static void free_words(kvi__cli_shell *sh)
{
    kvi_words_free(sh->w, sh->wlen, sh->nw);
    free(sh->words);
    sh->w = NULL;
    sh->wlen = NULL;
    sh->nw = 0;
    sh->words = NULL;
}

/*
 * The length of line without its comment: a word that starts with a '#'
 * outside quotes starts a comment that runs to the end of the line (a line
 * whose first non-blank byte is '#' is all comment).  Quotes follow
 * kvi_split_words: inside "..." a backslash escapes the next byte, inside
 * '...' only \' is an escape, outside quotes every byte is literal, so
 * "#x", 'a # b' and a#b are words, not comments.  With a quote left open
 * the line is kept whole, for the tokenizer to refuse.
 */
static size_t uncommented_len(const char *line, size_t len)
{
    int word_start = 1;
    for (size_t i = 0; i < len; i++) {
        char ch = line[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f') {
            word_start = 1;
            continue;
        }
        if (ch == '#' && word_start)
            return i;
        word_start = 0;
        if (ch == '"' || ch == '\'') {
            for (i++; i < len && line[i] != ch; i++)
                if (line[i] == '\\' && i + 1 < len && (ch == '"' || line[i + 1] == '\''))
                    i++;
            if (i >= len)
                return len;
        }
    }
    return len;
}

int kvi__cli_shell_read(kvi__cli_shell *sh, kvi__cli_line *ln, int *rc)
{
    memset(ln, 0, sizeof *ln);
    for (;;) {
        free_words(sh);
        int got = read_line(sh);
        if (got <= 0)
            return 0;
        size_t len = uncommented_len(sh->buf, sh->len);
        /* The one tokenizer of the library, the rules of raw queries. */
        kvi_status st = kvi_split_words(NULL, sh->buf, len, &sh->w, &sh->wlen, &sh->nw);
        if (st == KVI_E_NOMEM) {
            kvi__cli_report(sh->cli, KVI_E_NOMEM, "reading a command");
            *rc = kvi__cli_exit_code(KVI_E_NOMEM);
            sh->eof = 0;
            return 0;
        }
        if (st != KVI_OK && sh->pipe) {
            *rc = KVI_CLI_EXIT_USAGE;
            return 1; /* no words: the caller reports it in its turn */
        }
        if (st != KVI_OK) {
            *rc = kvi__cli_shell_bad_line(sh->cli);
            continue;
        }
        if (sh->nw == 0)
            continue;
        sh->words = calloc(sh->nw, sizeof *sh->words);
        if (sh->words == NULL) {
            kvi__cli_report(sh->cli, KVI_E_NOMEM, "reading a command");
            *rc = kvi__cli_exit_code(KVI_E_NOMEM);
            sh->eof = 0;
            return 0;
        }
        for (size_t i = 0; i < sh->nw; i++) {
            sh->words[i].p = sh->w[i];
            sh->words[i].len = sh->wlen[i];
        }
        if (sh->nw == 1 && (strcmp(sh->w[0], "quit") == 0 || strcmp(sh->w[0], "exit") == 0)) {
            sh->eof = 0;
            return 0;
        }
        ln->words = sh->words;
        ln->n = sh->nw;
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
    free_words(sh);
    free(sh->buf);
    free(sh->in);
    free(sh);
}
