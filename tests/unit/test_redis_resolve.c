/*
 * test_redis_resolve.c -- the redis engine's names looked up in the
 * background (resolve.c): a name that fails is reported with the
 * resolver's reason to every thread that asks, while the threads race to
 * try it again every second.
 *
 * The name "kvi..test" has an empty label, so the resolver refuses it
 * itself (EAI_NONAME) without asking DNS: no network needed.  The
 * background lookup (getaddrinfo_a and its gai_* companions) is this
 * program's own, below, answering EAI_NONAME at once: glibc's helper
 * threads are not made through pthread_create, which ThreadSanitizer must
 * see (its malloc crashes in them), and the test is about resolve.c's
 * rounds, not the resolver.
 *
 * resolve.c is compiled into this test directly: it is part of the
 * kvi_redis module, whose internals a statically linked test cannot reach.
 * Built with -fsanitize=thread this is also the check that a failed
 * round's reason is not read while the next round writes it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getaddrinfo_a, in resolve.c */
#endif
#include <netdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engines/redis/resolve.c"

#define BAD_NAME "kvi..test"

/* The background resolver of this program: every lookup is done at once
 * and fails (EAI_NONAME), as glibc's would for BAD_NAME. */
int getaddrinfo_a(int mode, struct gaicb *list[], int n, struct sigevent *sig)
{
    (void)mode;
    (void)sig;
    for (int i = 0; i < n; i++) {
        list[i]->ar_result = NULL;
        list[i]->__return = EAI_NONAME;
    }
    return 0;
}

int gai_error(struct gaicb *req)
{
    return req->__return;
}

int gai_cancel(struct gaicb *req)
{
    (void)req;
    return EAI_ALLDONE;
}

int gai_suspend(const struct gaicb *const list[], int n, const struct timespec *timeout)
{
    (void)list;
    (void)n;
    (void)timeout;
    return 0;
}

struct asker {
    struct kvi_redis_names *t;
    int64_t until_ms;
    int failed;  /* answers "cannot resolve ..." with the right reason */
    int pending; /* answers "being resolved" */
    char odd[256]; /* the first other answer */
};

static void *ask_until(void *arg)
{
    struct asker *a = arg;
    char want[256];
    snprintf(want, sizeof want, "cannot resolve " BAD_NAME ": %s", gai_strerror(EAI_NONAME));
    while (now_ms() < a->until_ms) {
        char err[256] = "";
        if (kvi__redis_names_get(a->t, BAD_NAME, err, sizeof err) != NULL) {
            snprintf(a->odd, sizeof a->odd, "%s resolved", BAD_NAME);
            break;
        }
        if (strcmp(err, want) == 0)
            a->failed++;
        else if (strstr(err, "is being resolved") != NULL)
            a->pending++;
        else if (a->odd[0] == '\0')
            snprintf(a->odd, sizeof a->odd, "%s", err);
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Four threads ask for a name that does not resolve for 2.5 s (so the
 * name is tried again twice, by whichever thread wins the retry): each
 * sees the resolver's reason, never another text. */
static void test_a_failed_name_reports_the_reason_to_every_thread(void **state)
{
    (void)state;
    enum { N = 4 };
    struct kvi_redis_names *t = kvi__redis_names_new();
    assert_non_null(t);
    struct asker a[N];
    pthread_t th[N];
    int64_t until = now_ms() + 2500;
    for (int i = 0; i < N; i++) {
        a[i] = (struct asker){.t = t, .until_ms = until};
        assert_int_equal(pthread_create(&th[i], NULL, ask_until, &a[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < N; i++) {
        print_message("  thread %d: %d failed answers, %d 'being resolved'%s%s\n", i, a[i].failed,
                      a[i].pending, a[i].odd[0] ? ", other: " : "", a[i].odd);
        if (a[i].odd[0] != '\0')
            fail_msg("thread %d was answered: %s", i, a[i].odd);
        assert_true(a[i].failed > 0);
    }
    kvi__redis_names_free(t);
}

/* A name the URL defines (resolved now, blocking) that fails keeps the
 * reason for the connects of the next second. */
static void test_a_name_failed_at_definition_keeps_its_reason(void **state)
{
    (void)state;
    struct kvi_redis_names *t = kvi__redis_names_new();
    assert_non_null(t);
    char want[256], err[256] = "";
    snprintf(want, sizeof want, "cannot resolve " BAD_NAME ": %s", gai_strerror(EAI_NONAME));
    assert_null(kvi__redis_names_resolve_now(t, BAD_NAME, err, sizeof err));
    assert_string_equal(err, want);
    err[0] = '\0';
    assert_null(kvi__redis_names_get(t, BAD_NAME, err, sizeof err));
    assert_string_equal(err, want);
    kvi__redis_names_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_failed_name_reports_the_reason_to_every_thread),
        cmocka_unit_test(test_a_name_failed_at_definition_keeps_its_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
