/*
 * cli.h -- what the files of the `kvi` command share.  The command uses only
 * the public API (kvi/kvi.h, and from kvi/engine.h kvi_split_words for the
 * shell and kvi_parse_int64 for numbers); nothing here is installed.
 *
 * The files and who calls whom (no two files call each other):
 *
 *   main.c      options, the store, one command or the shell loop
 *     -> pipe.c      `pipe ID`: shell lines run in batches, results in order
 *     -> commands.c  the command table, argument checking, running one command
 *          -> cmd_data.c     handlers of the operations on keys
 *          -> cmd_info.c     handlers of stats, engines, url
 *     -> shell.c     reading and splitting shell lines
 *     -> state.c     the default local store and its lock
 *   report.c    exit codes, error and usage messages   (called by all above)
 *   out.c       byte encodings, JSON, reply trees      (called by all above)
 *   signals.c   SIGINT/SIGTERM/SIGHUP noted for main, shell.c, state.c
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
    int quiet;                    /* report nothing (pipe's trial parse) */
} kvi__cli;

/* ---- the command table (commands.c) ----------------------------------- */

/* What a positional argument is; decides how it is checked. */
typedef enum kvi__cli_kind {
    KVI_CLI_K_NONE,
    KVI_CLI_K_ID,     /* engine id: non-empty, no NUL */
    KVI_CLI_K_KEY,    /* any bytes */
    KVI_CLI_K_VALUE,  /* any bytes; "-" reads standard input (not in the shell) */
    KVI_CLI_K_DELTA,  /* int64 */
    KVI_CLI_K_EXPIRE, /* int64 >= 0 */
    KVI_CLI_K_GLOB,   /* any bytes */
    KVI_CLI_K_QUERY,  /* any bytes; in the shell the words after the ID */
    KVI_CLI_K_URL     /* no NUL */
} kvi__cli_kind;

#define KVI_CLI_F_STORE 1u /* needs the store (a context with engine ids) */
#define KVI_CLI_F_SHELL 2u /* the shell: main runs it, never from the shell */
#define KVI_CLI_F_PIPE 4u  /* pipe: main runs it, never from the shell */
#define KVI_CLI_F_LOOK 8u  /* only looks: a shared collection is attached, never created */

#define KVI_CLI_MAX_ARGS 4

/* Flags a command takes after its required arguments (kvi__cli_command.opts). */
#define KVI_CLI_O_BOUNDS 1u /* --min N, --max N: bounded add/sub */
#define KVI_CLI_O_NX 2u     /* --nx: store only if absent */
#define KVI_CLI_O_BATCH 4u  /* --batch N: pipe's batch size */
#define KVI_CLI_O_STATS 8u  /* --interval N, --count M, --format F: stats */

/* What stats prints. */
typedef enum kvi__cli_format {
    KVI_CLI_FORMAT_TEXT = 0,      /* the default: "id:" then "  name  value" lines */
    KVI_CLI_FORMAT_PROMETHEUS = 1 /* Prometheus text exposition format 0.0.4 */
} kvi__cli_format;

/* Largest stats --interval (seconds). */
#define KVI_CLI_INTERVAL_MAX 86400

/* pipe's default and largest --batch. */
#define KVI_CLI_PIPE_BATCH 1000
#define KVI_CLI_PIPE_BATCH_MAX 1000000

struct kvi__cli_command;

/* A command with its arguments checked (by kvi__cli_parse). */
typedef struct kvi__cli_args {
    const struct kvi__cli_command *cmd;
    const char *id; /* NULL for "stats" without ID */
    kvi__cli_arg key, value, glob, query, url;
    int has_glob;
    int64_t delta;
    int64_t expire_s;
    int has_min, has_max, nx; /* --min, --max, --nx given */
    int64_t batch;            /* --batch N (pipe), KVI_CLI_PIPE_BATCH when not given */
    int64_t interval_s;       /* stats --interval N; 0 = print once */
    int64_t count;            /* stats --count M; 0 = until interrupted (with --interval) */
    kvi__cli_format format;   /* stats --format */
    int has_format;           /* --format given */
    int64_t min, max;         /* INT64_MIN / INT64_MAX when not given */
    char *owned;              /* value read from standard input, or the joined query of raw in
                                 the shell; freed by kvi__cli_args_free */
} kvi__cli_args;

/* Runs a checked command on cli; prints its result or error and returns
 * its exit status. */
typedef int kvi__cli_handler(kvi__cli *cli, const kvi__cli_args *a);

/* One row of the command table.  A new command is one row plus its
 * handler; a new argument kind is one case in kvi__cli_parse. */
typedef struct kvi__cli_command {
    const char *name;
    const char *alias; /* the OpenSIPS script name, or NULL */
    const char *args;  /* for the usage line */
    size_t nreq;       /* required positional arguments */
    size_t nopt;       /* optional ones after them */
    kvi__cli_kind kinds[KVI_CLI_MAX_ARGS];
    unsigned flags;        /* KVI_CLI_F_* */
    kvi__cli_handler *run; /* NULL for the shell (main runs it) */
    const char *what;      /* one line for --help; NULL: not listed */
    unsigned opts;         /* KVI_CLI_O_* flags it accepts */
} kvi__cli_command;

/*
 * Checks words[0..n) (words[0] is the command; n >= 1) into *a.  In the
 * shell, several words after the ID of a command whose second argument is a
 * QUERY (raw) are joined into that query, quoted so that the engine's
 * tokenizer reads back the same words.  Returns -1 when all is well,
 * otherwise the exit status after reporting the problem.  Release *a with
 * kvi__cli_args_free either way.
 */
int kvi__cli_parse(kvi__cli *cli, const kvi__cli_arg *words, size_t n, kvi__cli_args *a);

/* Frees what kvi__cli_parse allocated in a. */
void kvi__cli_args_free(kvi__cli_args *a);

/* Runs a command checked by kvi__cli_parse (not the shell); returns its
 * exit status. */
int kvi__cli_execute(kvi__cli *cli, const kvi__cli_args *a);

/* Parses and runs one shell line's words; returns the exit status. */
int kvi__cli_run_words(kvi__cli *cli, const kvi__cli_arg *words, size_t nwords);

/* Writes the help text (the command list from the table; in the shell
 * without the options and exit codes). */
void kvi__cli_help(FILE *f, int in_shell);
/* Prints the help (in_shell: the shell's) on standard output: as text, or
 * under --json as one object {"status":"ok","help":"<the text>"}.  Returns
 * 0, or the exit code of KVI_E_NOMEM. */
int kvi__cli_print_help(const kvi__cli *cli, int in_shell);
/* Prints the version of the command and of the library: "kvi X.Y.Z
 * (libkvi X.Y.Z)", or under --json {"status":"ok","version":...,"libkvi":...}. */
void kvi__cli_print_version(const kvi__cli *cli);

/* ---- handlers (cmd_data.c, cmd_info.c) -------------------------------- */

kvi__cli_handler kvi__cli_cmd_store, kvi__cli_cmd_fetch, kvi__cli_cmd_remove, kvi__cli_cmd_add,
    kvi__cli_cmd_sub, kvi__cli_cmd_counter, kvi__cli_cmd_raw, kvi__cli_cmd_ttl, kvi__cli_cmd_keys,
    kvi__cli_cmd_remove_chunk, kvi__cli_cmd_ping;
kvi__cli_handler kvi__cli_cmd_stats, kvi__cli_cmd_engines, kvi__cli_cmd_url;

/* Reports a refused conditional change (KVI_OUT_OF_BOUNDS with the current
 * value, KVI_KEY_EXISTS): the JSON document with --json, the reason on
 * standard error; returns its exit code. */
int kvi__cli_refused(const kvi__cli *cli, kvi_status st, int64_t current);

/* Writes a fetched value: its bytes (and a newline on a terminal or in the
 * shell), or the JSON document with --json. */
void kvi__cli_print_value(const kvi__cli *cli, const char *p, size_t n);

/* Writes a raw query's reply (text or JSON); returns 0, or the exit code of
 * KVI_E_BACKEND when the reply is an error reply. */
int kvi__cli_print_reply(const kvi__cli *cli, const kvi_reply *r);

/* ---- pipe.c ------------------------------------------------------------- */

/* Runs `pipe ID`: commands in shell syntax without their ID, one per line
 * of standard input, added to batches of a->batch operations on a->id; the
 * results printed in order as the shell prints them, a summary on standard
 * error.  Returns 0 when no command failed (KVI_NOT_FOUND and refusals are
 * outcomes), else the exit status of the first that did. */
int kvi__cli_run_pipe(kvi__cli *cli, const kvi__cli_args *a);

/* ---- report.c: exit codes and messages -------------------------------- */

/* The exit status for st, from the fourth column of KVI_STATUS_MAP. */
int kvi__cli_exit_code(kvi_status st);

/* Writes one line "  CODE  text (KVI_NAME)" per status whose exit code is
 * 3 or more (for --help). */
void kvi__cli_print_exit_codes(FILE *f);

/* Writes the error line "kvi: <strerror>: <errmsg>" (or its JSON document)
 * for status st with detail `detail` (may be NULL or ""). */
void kvi__cli_report(const kvi__cli *cli, kvi_status st, const char *detail);

/* Reports status st of the last call on cli->k with its detail message;
 * returns its exit code. */
int kvi__cli_fail(const kvi__cli *cli, kvi_status st);

/* Reports a usage error: the reason `what`, the offending word (arg, may be
 * NULL), then the usage line of cmd (or the general one when NULL).
 * Returns KVI_CLI_EXIT_USAGE. */
int kvi__cli_usage_error(const kvi__cli *cli, const kvi__cli_command *cmd, const char *what,
                         const kvi__cli_arg *arg);

/* ---- out.c: output encodings ------------------------------------------ */

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

/* Writes a raw-query reply tree to standard output, redis-cli style. */
void kvi__cli_reply_text(const kvi_reply *r);

/* Writes a raw-query reply tree to standard output as one JSON value. */
void kvi__cli_reply_json(const kvi_reply *r);

/* Writes {"status":"ok"} (with --json; nothing otherwise). */
void kvi__cli_print_ok(const kvi__cli *cli);

/* Writes an integer result: the number and a newline, or
 * {"status":"ok","<field>":v} with --json. */
void kvi__cli_print_int(const kvi__cli *cli, const char *field, int64_t v);

/* ---- shell.c: reading shell lines ------------------------------------- */

/* One command read by the shell: its words, split by the library's one
 * tokenizer (kvi_split_words, the rules of raw queries). */
typedef struct kvi__cli_line {
    kvi__cli_arg *words; /* n >= 1 */
    size_t n;
} kvi__cli_line;

typedef struct kvi__cli_shell kvi__cli_shell;

/* Starts reading commands for cli: interactive (prompt, and line editing
 * and history when built with libedit) when standard input is a terminal
 * and pipe is 0, batch otherwise; sets cli->in_shell and
 * cli->interactive.  With pipe set, a line that cannot be split is not
 * reported but returned with no words and *rc set, for the caller to
 * report in its turn (kvi__cli_shell_bad_line).  NULL when memory runs
 * out. */
kvi__cli_shell *kvi__cli_shell_open(kvi__cli *cli, int pipe);

/* Reports a line that cannot be split (bad quoting); returns its exit
 * status. */
int kvi__cli_shell_bad_line(const kvi__cli *cli);

/* Reads the next command into *ln (valid until the next call).  Returns 1
 * for a command, 0 at the end (end of input, "quit", "exit").  A line that
 * cannot be split is reported, *rc set to its exit status, and skipped. */
int kvi__cli_shell_read(kvi__cli_shell *sh, kvi__cli_line *ln, int *rc);

/* Saves the history and frees sh.  NULL is accepted. */
void kvi__cli_shell_close(kvi__cli_shell *sh);

/* ---- signals.c --------------------------------------------------------- */

/* Installs handlers that note SIGINT, SIGTERM and SIGHUP (SA_RESTART). */
void kvi__cli_signals_install(void);

/* The last signal noted and not cleared, 0 when none. */
int kvi__cli_signal(void);

/* Forgets the noted signal (the shell after Ctrl-C cancelled a line). */
void kvi__cli_signal_clear(void);

/* ---- state.c: the default local store --------------------------------- */

/*
 * Defines the default "local" engine id for a run without -u/-c:
 * creates the state directory, takes an exclusive lock on <dir>/cli.lock
 * that serialises kvi processes (waiting for another kvi; after two seconds
 * it says which command and pid holds it; gives up with KVI_E_LOCKED after
 * $KVI_LOCK_TIMEOUT seconds, default 30, or on SIGINT/SIGTERM/SIGHUP),
 * then defines
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
