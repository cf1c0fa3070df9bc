/*
 * cli.h -- what the files of the `kvi` command share.  The command uses only
 * the public API (kvi/kvi.h); nothing here is installed.
 */
#ifndef KVI_TOOLS_CLI_H
#define KVI_TOOLS_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "kvi/kvi.h"

/* Exit status of a usage error (bad option, arity, number). */
#define KVI_CLI_EXIT_USAGE 2

/* One argument: bytes that may hold NUL (shell words may). */
typedef struct kvi__cli_arg {
    const char *p;
    size_t len;
} kvi__cli_arg;

struct kvi__cli_state;

/* Everything one run of the command works with. */
typedef struct kvi__cli {
    kvi *k;                       /* NULL until a command needs the store */
    int json;                     /* --json */
    int in_shell;                 /* commands come from `shell` */
    int interactive;              /* shell on a terminal */
    int stdout_tty;               /* standard output is a terminal */
    struct kvi__cli_state *state; /* default local store; NULL with -u/-c */
    unsigned log_errors;          /* KVI_LOG_ERROR messages seen */
} kvi__cli;

/* ---- main.c ---------------------------------------------------------- */

/* Parses and runs one command given as words (argv after the options, or
 * one shell line).  `line`/`line_len` and `word_ofs` are the shell line and
 * where each word starts in it (NULL outside the shell; `raw` takes the rest
 * of a shell line verbatim).  Prints the result and errors; returns the exit
 * status of the command. */
int kvi__cli_run_words(kvi__cli *cli, const kvi__cli_arg *words, size_t nwords, const char *line,
                       size_t line_len, const size_t *word_ofs);

/* Writes the error line "kvi: <strerror>: <errmsg>" (or its JSON document)
 * for status st with detail `detail` (may be NULL or ""). */
void kvi__cli_report(const kvi__cli *cli, kvi_status st, const char *detail);

/* The exit status for st, from the fourth column of KVI_STATUS_MAP. */
int kvi__cli_exit_code(kvi_status st);

/* ---- out.c: output encodings ----------------------------------------- */

/* 1 when p[0..n) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int kvi__cli_utf8_valid(const char *p, size_t n);

/* Writes p[0..n) as a JSON string literal with quotes; p must be valid
 * UTF-8 (control characters become \uXXXX or \n-style escapes). */
void kvi__cli_json_string(FILE *f, const char *p, size_t n);

/* Writes the NUL-terminated s as a JSON string, or null when s is NULL. */
void kvi__cli_json_cstr(FILE *f, const char *s);

/* Writes "name":"text" when p[0..n) is valid UTF-8, otherwise
 * "name_base64":"..." (RFC 4648 base64 of the bytes). */
void kvi__cli_json_bytes_field(FILE *f, const char *name, const char *p, size_t n);

/* Writes a JSON value for bytes: a string when valid UTF-8, otherwise the
 * object {"base64":"..."}. */
void kvi__cli_json_bytes_value(FILE *f, const char *p, size_t n);

/* Writes bytes readably and losslessly: printable ASCII and valid UTF-8
 * characters from U+00A0 on as they are, a backslash as \\, a double quote
 * as \" when quote is set, every other byte as \xHH. */
void kvi__cli_write_escaped(FILE *f, const char *p, size_t n, int quote);

/* ---- shell.c ---------------------------------------------------------- */

/* Runs the shell: interactive (line editing and history when built with
 * libedit) when standard input is a terminal, batch otherwise.  Returns the
 * exit status of the last command run (0 when none). */
int kvi__cli_shell(kvi__cli *cli);

/* Splits a shell line into words.  Blanks separate words; "..." quotes with
 * the escapes \" \\ \n \r \t \0 \xHH; '...' quotes literally; a word
 * starting with # begins a comment.  On success returns 0 and sets *words
 * (each word's bytes, NUL-terminated, in one allocation freed with free()
 * together with *words), *ofs (offset where each word starts in the line,
 * free()) and *count.  Returns -1 with *err set to a static message for an
 * unterminated quote or a bad escape, -2 when memory runs out. */
int kvi__cli_split(const char *line, size_t len, kvi__cli_arg **words, size_t **ofs, size_t *count,
                   const char **err);

/* ---- state.c: the default local store --------------------------------- */

/*
 * Defines the default "local" engine id for a run without -u/-c:
 * creates the state directory, takes an exclusive lock (waiting) on
 * <dir>/cli.lock that serialises kvi processes, then defines
 * local://?file=<dir>/local.kvis (with save_s=1 when interactive).  On
 * success *out holds the lock; release it with kvi__cli_state_close after
 * kvi_free(k) (which writes the snapshot).  On failure returns the status
 * with a message in err, *out is NULL and no lock is held.
 */
kvi_status kvi__cli_state_open(kvi *k, int interactive, struct kvi__cli_state **out, char *err,
                               size_t errlen);

/* Releases the lock and frees st.  NULL is accepted. */
void kvi__cli_state_close(struct kvi__cli_state *st);

/* The state directory ($XDG_STATE_HOME/kvi or ~/.local/state/kvi) in buf,
 * created (mode 0700) when create is set.  Returns 0, or -1 with a message
 * in err. */
int kvi__cli_state_dir(char *buf, size_t buflen, int create, char *err, size_t errlen);

#endif /* KVI_TOOLS_CLI_H */
