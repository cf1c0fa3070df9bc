/*
 * cmd_data.c -- the handlers of the commands that work on keys: store,
 * fetch, remove, add, sub, counter, raw, ttl, keys, remove-chunk, ping.
 * Each gets its arguments checked (commands.c), makes one library call and
 * prints the result (text, or JSON with --json).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* A conditional change that was refused (KVI_OUT_OF_BOUNDS with the current
 * value, KVI_KEY_EXISTS): an outcome, so nothing on standard output but the
 * JSON document with --json; the reason on standard error. */
int kvi__cli_refused(const kvi__cli *cli, kvi_status st, int64_t current)
{
    int oob = st == KVI_OUT_OF_BOUNDS;
    if (cli->json) {
        if (oob)
            printf("{\"status\":\"out_of_bounds\",\"value\":%" PRId64 "}\n", current);
        else
            fputs("{\"status\":\"key_exists\"}\n", stdout);
    }
    fflush(stdout);
    if (oob)
        fprintf(stderr, "kvi: %s (value %" PRId64 ")\n", kvi_strerror(st), current);
    else
        fprintf(stderr, "kvi: %s\n", kvi_strerror(st));
    return kvi__cli_exit_code(st);
}

int kvi__cli_cmd_store(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_status st = o->nx ? kvi_store_nx(cli->k, o->id, o->key.p, o->key.len, o->value.p,
                                         o->value.len, o->expire_s)
                          : kvi_store(cli->k, o->id, o->key.p, o->key.len, o->value.p, o->value.len,
                                      o->expire_s);
    if (st == KVI_KEY_EXISTS)
        return kvi__cli_refused(cli, st, 0);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    kvi__cli_print_ok(cli);
    return 0;
}

int kvi__cli_cmd_fetch(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_fetch(cli->k, o->id, o->key.p, o->key.len, &v);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    kvi__cli_print_value(cli, v.data, v.len);
    kvi_value_free(&v);
    return 0;
}

void kvi__cli_print_value(const kvi__cli *cli, const char *p, size_t n)
{
    if (cli->json) {
        fputs("{\"status\":\"ok\",", stdout);
        kvi__cli_json_bytes_field(stdout, "value", p, n);
        fputs("}\n", stdout);
    } else {
        fwrite(p, 1, n, stdout);
        if (cli->stdout_tty || cli->in_shell)
            fputc('\n', stdout);
    }
}

int kvi__cli_cmd_remove(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_status st = kvi_remove(cli->k, o->id, o->key.p, o->key.len);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    kvi__cli_print_ok(cli);
    return 0;
}

/* The result of a call that yields one integer. */
static int int_result(kvi__cli *cli, kvi_status st, const char *field, int64_t v)
{
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    kvi__cli_print_int(cli, field, v);
    return 0;
}

/* add and sub, bounded when --min or --max was given. */
static int counter_cmd(kvi__cli *cli, const kvi__cli_args *o, int sub)
{
    int64_t n = 0;
    kvi_status st;
    if (o->has_min || o->has_max)
        st = (sub ? kvi_sub_bounded : kvi_add_bounded)(cli->k, o->id, o->key.p, o->key.len,
                                                       o->delta, o->expire_s, o->min, o->max, &n);
    else
        st = (sub ? kvi_sub : kvi_add)(cli->k, o->id, o->key.p, o->key.len, o->delta, o->expire_s,
                                       &n);
    if (st == KVI_OUT_OF_BOUNDS)
        return kvi__cli_refused(cli, st, n);
    return int_result(cli, st, "value", n);
}

int kvi__cli_cmd_add(kvi__cli *cli, const kvi__cli_args *o)
{
    return counter_cmd(cli, o, 0);
}

int kvi__cli_cmd_sub(kvi__cli *cli, const kvi__cli_args *o)
{
    return counter_cmd(cli, o, 1);
}

int kvi__cli_cmd_counter(kvi__cli *cli, const kvi__cli_args *o)
{
    int64_t n = 0;
    kvi_status st = kvi_counter_fetch(cli->k, o->id, o->key.p, o->key.len, &n);
    return int_result(cli, st, "value", n);
}

int kvi__cli_cmd_ttl(kvi__cli *cli, const kvi__cli_args *o)
{
    int64_t n = 0;
    kvi_status st = kvi_ttl(cli->k, o->id, o->key.p, o->key.len, &n);
    return int_result(cli, st, "ttl", n);
}

int kvi__cli_cmd_raw(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_reply *r = NULL;
    kvi_status st = kvi_raw_query(cli->k, o->id, o->query.p, o->query.len, &r);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    int rc = kvi__cli_print_reply(cli, r);
    kvi_reply_free(r);
    return rc;
}

int kvi__cli_print_reply(const kvi__cli *cli, const kvi_reply *r)
{
    if (cli->json) {
        fputs("{\"status\":\"ok\",\"reply\":", stdout);
        kvi__cli_reply_json(r);
        fputs("}\n", stdout);
    } else {
        kvi__cli_reply_text(r);
    }
    return kvi_reply_type_of(r) == KVI_REPLY_ERROR ? kvi__cli_exit_code(KVI_E_BACKEND) : 0;
}

int kvi__cli_cmd_remove_chunk(kvi__cli *cli, const kvi__cli_args *o)
{
    uint64_t removed = 0;
    kvi_status st = kvi_remove_chunk(cli->k, o->id, o->glob.p, o->glob.len, &removed);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    if (cli->json)
        printf("{\"status\":\"ok\",\"removed\":%" PRIu64 "}\n", removed);
    else
        printf("%" PRIu64 "\n", removed);
    return 0;
}

int kvi__cli_cmd_ping(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_status st = kvi_ping(cli->k, o->id);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
    if (cli->json)
        kvi__cli_print_ok(cli);
    else
        puts("PONG");
    return 0;
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

int kvi__cli_cmd_keys(kvi__cli *cli, const kvi__cli_args *o)
{
    kvi_reply *r = NULL;
    kvi_status st =
        kvi_keys(cli->k, o->id, o->has_glob ? o->glob.p : "*", o->has_glob ? o->glob.len : 1, &r);
    if (st != KVI_OK)
        return kvi__cli_fail(cli, st);
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
            /* \" too, so that a line pasted between double quotes in the
             * shell is the same key. */
            kvi__cli_write_escaped(stdout, refs[i].p, refs[i].len, 1);
            fputc('\n', stdout);
        }
    }
    if (cli->json)
        fputs("]}\n", stdout);
    free(refs);
    kvi_reply_free(r);
    return 0;
}
