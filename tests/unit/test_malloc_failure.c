/*
 * test_malloc_failure.c -- what lives outside a context uses the C
 * library's malloc (kvi_url_parse, kvi_split_words, reply trees, config
 * files, kvi_add_url's parsing, the local engine's key listing): when malloc
 * fails at any one of its calls, each function answers KVI_E_NOMEM (NULL for
 * the reply builders) and never crashes, leaks or half-builds a result.
 *
 * The program defines malloc/calloc/realloc itself (forwarding to glibc's
 * __libc_* functions) so that a test can refuse the Nth call while it is
 * armed.  Under a sanitizer or valgrind, which bring their own allocator,
 * nothing is refused: the same calls then only have to succeed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <unistd.h>

#include "kvi/engine.h"
#include "kvitest.h"

#if defined(__SANITIZE_ADDRESS__)
#define KVI_NO_MALLOC_HOOK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define KVI_NO_MALLOC_HOOK 1
#endif
#endif

/* Armed: calls are counted and the one numbered fail_at is refused. */
static struct {
    int armed;
    size_t calls, fail_at, refused;
} g;

#ifndef KVI_NO_MALLOC_HOOK
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);

static int refuse(void)
{
    if (!g.armed)
        return 0;
    if (++g.calls != g.fail_at)
        return 0;
    g.refused++;
    errno = ENOMEM; /* as malloc does */
    return 1;
}

void *malloc(size_t size)
{
    return refuse() ? NULL : __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    return refuse() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    return refuse() ? NULL : __libc_realloc(p, size);
}
#endif

static char g_dir[4096];

typedef kvi_status (*step_fn)(void);

/* Runs step with every malloc call refused once in turn, then with none:
 * each run ends in KVI_OK or KVI_E_NOMEM (OK when nothing was refused). */
static void sweep(const char *name, step_fn step)
{
    g.armed = 1;
    g.calls = 0;
    g.fail_at = 0;
    kvi_status st = step();
    g.armed = 0;
    size_t total = g.calls;
    if (st != KVI_OK)
        fail_msg("%s: %s with enough memory", name, kvi_status_name(st));
    /* No call counted: malloc is not ours here (valgrind and the sanitizers
     * replace it); the step has shown that it succeeds. */
    if (total == 0) {
        print_message("%s: malloc is replaced in this run; nothing refused\n", name);
        return;
    }
    size_t nomem = 0;
    for (size_t at = 1; at <= total; at++) {
        g.calls = 0;
        g.refused = 0;
        g.fail_at = at;
        g.armed = 1;
        st = step();
        g.armed = 0;
        if (st != KVI_OK && st != KVI_E_NOMEM)
            fail_msg("%s: malloc call %zu refused: %s", name, at, kvi_status_name(st));
        nomem += st == KVI_E_NOMEM;
    }
    if (nomem == 0)
        fail_msg("%s: no refused call out of %zu gave KVI_E_NOMEM", name, total);
}

static kvi_status step_url(void)
{
    kvi_url *u = NULL;
    char err[128];
    kvi_status st = kvi_url_parse(
        "redis:billing://user:p%41ss@[::1]:7001,h2:7002,h3/3?cluster=yes&timeout=50&x=%20y", &u,
        err, sizeof err);
    if (st == KVI_OK) {
        assert_non_null(u);
        assert_string_equal(kvi_url_option_get(u, "x"), " y");
        char buf[256];
        kvi_url_format_redacted(u, buf, sizeof buf);
    } else {
        assert_null(u);
    }
    kvi_url_free(u);
    return st;
}

static kvi_status step_words(void)
{
    char **w = NULL;
    size_t *l = NULL, n = 0;
    kvi_status st = kvi_split_words(NULL, "SET a \"b c\" 'd' e f g h i j k l", 31, &w, &l, &n);
    if (st == KVI_OK) {
        assert_int_equal(n, 12);
        assert_string_equal(w[2], "b c");
    } else {
        assert_null(w);
        assert_int_equal(n, 0);
    }
    kvi_words_free(w, l, n);
    return st;
}

static kvi_status step_reply(void)
{
    kvi_reply *a = kvi_reply_new_array(1);
    if (a == NULL)
        return KVI_E_NOMEM;
    for (int i = 0; i < 20; i++) {
        kvi_reply *e = i % 2 ? kvi_reply_new_integer(i)
                             : kvi_reply_new_string(KVI_REPLY_STRING, "some text", 9);
        if (e == NULL) {
            kvi_reply_free(a);
            return KVI_E_NOMEM;
        }
        kvi_status st = kvi_reply_append(a, e);
        if (st != KVI_OK) {
            kvi_reply_free(e);
            kvi_reply_free(a);
            return st;
        }
    }
    kvi_reply *nil = kvi_reply_new_nil();
    if (nil == NULL) {
        kvi_reply_free(a);
        return KVI_E_NOMEM;
    }
    kvi_reply_free(nil);
    assert_int_equal(kvi_reply_count(a), 20);
    kvi_reply_free(a);
    return KVI_OK;
}

static kvi_status step_context(void)
{
    kvi *k = NULL;
    kvi_status st = kvi_new(&k);
    if (st != KVI_OK)
        return st;
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/ids.conf", g_dir);
    st = kvi_load_config(k, conf);
    /* Refusals whose messages are formatted (an engine's, with a password
     * to mask, and the core's): the status stays, the message may be the
     * out-of-memory stand-in. */
    if (st == KVI_OK) {
        kvi_status bad = kvi_add_url(k, "local:e://user:Pa55word@/");
        if (bad != KVI_E_INVALID && bad != KVI_E_NOMEM)
            fail_msg("local with a password: %s", kvi_status_name(bad));
        bad = kvi_add_url(k, "local:f://?max_memory=lots");
        if (bad != KVI_E_INVALID && bad != KVI_E_NOMEM)
            fail_msg("local with a bad option: %s", kvi_status_name(bad));
        st = bad == KVI_E_NOMEM ? bad : KVI_OK;
    }
    if (st == KVI_OK)
        st = kvi_add_url(k, "local:m://?max_memory=1m");
    for (int i = 0; st == KVI_OK && i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        st = kvi_store(k, "local:m", key, strlen(key), "v", 1, 0);
    }
    if (st == KVI_OK) {
        kvi_reply *r = NULL;
        st = kvi_keys(k, "local:m", "k*", 2, &r);
        if (st == KVI_OK)
            assert_int_equal(kvi_reply_count(r), 20);
        kvi_reply_free(r);
    }
    if (st == KVI_OK) {
        kvi_stats s;
        st = kvi_stats_get(k, "local:c", &s);
    }
    kvi_free(k);
    return st;
}

static void test_url_parser_survives_malloc_failure(void **state)
{
    (void)state;
    sweep("kvi_url_parse", step_url);
}

static void test_tokenizer_survives_malloc_failure(void **state)
{
    (void)state;
    sweep("kvi_split_words", step_words);
}

static void test_reply_builders_survive_malloc_failure(void **state)
{
    (void)state;
    sweep("reply builders", step_reply);
}

static void test_contexts_and_config_files_survive_malloc_failure(void **state)
{
    (void)state;
    sweep("context, config file, keys", step_context);
}

static int setup(void **state)
{
    (void)state;
    char *dir = NULL;
    if (kvi_ts_make_tempdir("mallocfail", &dir) != KVI_TS_OK)
        return -1;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    free(dir);
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/ids.conf", g_dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        return -1;
    fputs("# ids\nlocal:c://\n  local:d://?max_memory=2m  \n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kvi_ts_remove_tree(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parser_survives_malloc_failure),
        cmocka_unit_test(test_tokenizer_survives_malloc_failure),
        cmocka_unit_test(test_reply_builders_survive_malloc_failure),
        cmocka_unit_test(test_contexts_and_config_files_survive_malloc_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
