/*
 * pipe.c -- `kvi pipe ID [--batch N]`: bulk commands from standard input.
 *
 * Each line is a shell command (shell.c reads and splits it, commands.c
 * checks it) written without its ID, which the pipe puts in: "store k v 60",
 * "fetch k", "add n 5 --max 10", "raw INCR n".  Only the commands a batch
 * runs are accepted (store, fetch, remove, add, sub, counter, raw and their
 * aliases).  Lines are added to a kvi_batch; every N of them the batch runs
 * (one round trip per server where the engine can) and the results are
 * printed in order, as the shell prints them.  A line that is not such a
 * command is reported in its turn (the batch before it runs first).  At
 * the end a summary goes to standard error.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

struct pipe_run {
    kvi__cli *cli;
    kvi_batch *b;
    size_t cap;                 /* --batch */
    uint64_t lines, ok, not_found, refused, failed;
    int rc;                     /* exit status of the first failure, 0 */
};

static void note_failure(struct pipe_run *p, int rc)
{
    p->failed++;
    if (p->rc == 0)
        p->rc = rc;
}

/* Prints the result of op i as the shell prints that command's. */
static void print_result(struct pipe_run *p, size_t i)
{
    const kvi__cli *cli = p->cli;
    kvi_batch *b = p->b;
    kvi_status st = kvi_batch_status(b, i);
    kvi_op_kind kind = kvi_batch_kind(b, i);
    if (st == KVI_NOT_FOUND) {
        p->not_found++;
        kvi__cli_report(cli, st, NULL);
        return;
    }
    if (st == KVI_OUT_OF_BOUNDS || st == KVI_KEY_EXISTS) {
        p->refused++;
        kvi__cli_refused(cli, st, kvi_batch_integer(b, i));
        return;
    }
    if (st != KVI_OK) {
        kvi__cli_report(cli, st, kvi_batch_errmsg(b, i));
        note_failure(p, kvi__cli_exit_code(st));
        return;
    }
    size_t len = 0;
    const char *v;
    int rc = 0;
    switch (kind) {
    case KVI_OP_FETCH:
        v = kvi_batch_value(b, i, &len);
        kvi__cli_print_value(cli, v != NULL ? v : "", len);
        break;
    case KVI_OP_ADD:
    case KVI_OP_SUB:
    case KVI_OP_ADD_BOUNDED:
    case KVI_OP_SUB_BOUNDED:
    case KVI_OP_COUNTER_FETCH:
        kvi__cli_print_int(cli, "value", kvi_batch_integer(b, i));
        break;
    case KVI_OP_RAW_QUERY:
        rc = kvi__cli_print_reply(cli, kvi_batch_reply(b, i));
        break;
    default:
        kvi__cli_print_ok(cli);
        break;
    }
    if (rc != 0)
        note_failure(p, rc);
    else
        p->ok++;
}

/* Runs what the batch holds and prints every result in order. */
static void flush(struct pipe_run *p)
{
    size_t n = kvi_batch_count(p->b);
    if (n == 0)
        return;
    (void)kvi_batch_run(p->b, 0); /* each op has its own status */
    for (size_t i = 0; i < n; i++)
        print_result(p, i);
    kvi_batch_clear(p->b);
}

/* Adds a checked command to the batch.  The status is the op's (a refusal
 * of an argument stays with the op and is printed in its turn). */
static void add_op(struct pipe_run *p, const kvi__cli_args *a)
{
    kvi_batch *b = p->b;
    const char *id = a->id;
    const kvi__cli_command *c = a->cmd;
    int bounded = a->has_min || a->has_max;
    kvi_status st;
    if (c->run == kvi__cli_cmd_store)
        st = (a->nx ? kvi_batch_store_nx : kvi_batch_store)(b, id, a->key.p, a->key.len, a->value.p,
                                                            a->value.len, a->expire_s);
    else if (c->run == kvi__cli_cmd_fetch)
        st = kvi_batch_fetch(b, id, a->key.p, a->key.len);
    else if (c->run == kvi__cli_cmd_remove)
        st = kvi_batch_remove(b, id, a->key.p, a->key.len);
    else if (c->run == kvi__cli_cmd_counter)
        st = kvi_batch_counter_fetch(b, id, a->key.p, a->key.len);
    else if (c->run == kvi__cli_cmd_raw)
        st = kvi_batch_raw_query(b, id, a->query.p, a->query.len);
    else if (bounded)
        st = (c->run == kvi__cli_cmd_sub ? kvi_batch_sub_bounded : kvi_batch_add_bounded)(
            b, id, a->key.p, a->key.len, a->delta, a->expire_s, a->min, a->max);
    else
        st = (c->run == kvi__cli_cmd_sub ? kvi_batch_sub : kvi_batch_add)(
            b, id, a->key.p, a->key.len, a->delta, a->expire_s);
    if (st == KVI_E_NOMEM) {
        /* Not appended: run what is there, then report this line. */
        flush(p);
        kvi__cli_report(p->cli, st, "adding a command to the batch");
        note_failure(p, kvi__cli_exit_code(st));
    }
}

static int pipe_command(const kvi__cli_command *c)
{
    return c->run == kvi__cli_cmd_store || c->run == kvi__cli_cmd_fetch ||
           c->run == kvi__cli_cmd_remove || c->run == kvi__cli_cmd_add ||
           c->run == kvi__cli_cmd_sub || c->run == kvi__cli_cmd_counter ||
           c->run == kvi__cli_cmd_raw;
}

/* One line's words with the ID put in after the command, checked and added.
 * The check runs quietly first: a line that is refused is reported only
 * after the results of the lines before it, so the output keeps the order
 * of the input. */
static void take_line(struct pipe_run *p, const kvi__cli_line *ln, const kvi__cli_arg *id,
                      kvi__cli_arg **words, size_t *cap)
{
    p->lines++;
    if (ln->n + 1 > *cap) {
        kvi__cli_arg *nw = realloc(*words, (ln->n + 1) * sizeof *nw);
        if (nw == NULL) {
            flush(p);
            kvi__cli_report(p->cli, KVI_E_NOMEM, "reading a command");
            note_failure(p, kvi__cli_exit_code(KVI_E_NOMEM));
            return;
        }
        *words = nw;
        *cap = ln->n + 1;
    }
    kvi__cli_arg *w = *words;
    w[0] = ln->words[0];
    w[1] = *id;
    if (ln->n > 1)
        memcpy(w + 2, ln->words + 1, (ln->n - 1) * sizeof *w);
    kvi__cli_args a;
    p->cli->quiet = 1;
    int rc = kvi__cli_parse(p->cli, w, ln->n + 1, &a);
    p->cli->quiet = 0;
    if (rc < 0 && pipe_command(a.cmd)) {
        add_op(p, &a);
        kvi__cli_args_free(&a);
        if (kvi_batch_count(p->b) >= p->cap)
            flush(p);
        return;
    }
    kvi__cli_args_free(&a);
    flush(p);
    if (rc >= 0) {
        rc = kvi__cli_parse(p->cli, w, ln->n + 1, &a); /* again, to report it */
        kvi__cli_args_free(&a);
    } else {
        rc = kvi__cli_usage_error(p->cli, NULL,
                                  "pipe runs only store, fetch, remove, add, sub, counter and raw",
                                  &ln->words[0]);
    }
    note_failure(p, rc >= 0 ? rc : KVI_CLI_EXIT_USAGE);
}

/* A line the shell's tokenizer refused, reported in its turn. */
static void bad_line(struct pipe_run *p)
{
    p->lines++;
    flush(p);
    note_failure(p, kvi__cli_shell_bad_line(p->cli));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int kvi__cli_run_pipe(kvi__cli *cli, const kvi__cli_args *a)
{
    struct pipe_run p;
    memset(&p, 0, sizeof p);
    p.cli = cli;
    p.cap = (size_t)a->batch;
    kvi_status st = kvi_batch_new(cli->k, &p.b);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    kvi__cli_shell *sh = kvi__cli_shell_open(cli, 1);
    if (sh == NULL) {
        kvi_batch_free(p.b);
        kvi__cli_report(cli, KVI_E_NOMEM, "starting the pipe");
        return kvi__cli_exit_code(KVI_E_NOMEM);
    }
    kvi__cli_arg id = {a->id, strlen(a->id)};
    kvi__cli_arg *words = NULL;
    size_t cap = 0;
    double t0 = now_s();
    kvi__cli_line ln;
    int rc = 0;
    while (kvi__cli_shell_read(sh, &ln, &rc)) {
        if (ln.n == 0)
            bad_line(&p);
        else
            take_line(&p, &ln, &id, &words, &cap);
        rc = 0;
    }
    flush(&p);
    if (rc != 0) /* reading stopped: out of memory (reported) */
        note_failure(&p, rc);
    fflush(stdout);
    double dt = now_s() - t0;
    fprintf(stderr,
            "kvi pipe: %" PRIu64 " commands in %.3f s (%.0f/s): %" PRIu64 " ok, %" PRIu64
            " not found, %" PRIu64 " refused, %" PRIu64 " failed\n",
            p.lines, dt, dt > 0 ? (double)p.lines / dt : 0.0, p.ok, p.not_found, p.refused,
            p.failed);
    free(words);
    kvi__cli_shell_close(sh);
    kvi_batch_free(p.b);
    return p.rc;
}
