/*
 * test_redis_resolve.c -- the redis engine's names looked up in the
 * background (resolve.c): a name that fails is reported with the
 * resolver's reason to every thread that asks, while the threads race to
 * try it again every second.
 *
 * The name "kvi..test" has an empty label, so the resolver refuses it
 * itself (EAI_NONAME) without asking DNS: no network needed.  The program
 * interposes getaddrinfo() (resolve.c's lookup threads call it): the name
 * "kvi-slow..test" takes SLOW_MS to fail, like a DNS answer that is late.
 *
 * resolve.c is compiled into this test directly: it is part of the
 * kvi_redis module, whose internals a statically linked test cannot reach.
 * Built with -fsanitize=thread this is also the check that a failed
 * round's reason is not read while the next round writes it.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engines/redis/resolve.c"
#include "kvitest.h"

#define BAD_NAME "kvi..test"
#define SLOW_NAME "kvi-slow..test"
#define SLOW_MS 500

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static gai_fn real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void find_real(void)
{
    *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    pthread_once(&real_once, find_real);
    if (node != NULL && strcmp(node, SLOW_NAME) == 0) {
        struct timespec ts = {0, SLOW_MS * 1000000L};
        nanosleep(&ts, NULL);
        return EAI_NONAME;
    }
    return real != NULL ? real(node, service, hints, res) : EAI_SYSTEM;
}

struct asker {
    struct kvi_redis_names *t;
    int64_t until_ms;
    int failed;    /* answers "cannot resolve ..." with the right reason */
    int pending;   /* answers "being resolved" */
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

/* The child of test_a_child_after_fork_resolves_its_own_names: 0 when it
 * resolved "localhost" (a name the parent never asked for) within 3 s. */
static int child_resolves(struct kvi_redis_names *t)
{
    alarm(20); /* a lookup blocked on a lock copied from the parent */
    char err[256] = "";
    (void)kvi__redis_names_get(t, "localhost", err, sizeof err);
    kvi__redis_names_wait(t, "localhost", now_ms() + 3000);
    if (kvi__redis_names_get(t, "localhost", err, sizeof err) == NULL) {
        printf("# child %d: %s\n", (int)getpid(), err);
        fflush(stdout);
        return 1;
    }
    return 0;
}

/* Forks 20 times, each time with four lookups of the parent just started
 * (names under .invalid: the resolver asks DNS, when there is one, and
 * fails): every child resolves a name of its own.  (glibc's getaddrinfo_a,
 * which has no fork handling, left about half of such children without an
 * answer, some blocked on its copied lock.) */
static void test_a_child_after_fork_resolves_its_own_names(void **state)
{
    (void)state;
    enum { FORKS = 20, INFLIGHT = 4 };
    int stuck = 0;
    for (int i = 0; i < FORKS; i++) {
        struct kvi_redis_names *t = kvi__redis_names_new();
        assert_non_null(t);
        char name[64], err[256];
        for (int j = 0; j < INFLIGHT; j++) {
            snprintf(name, sizeof name, "kvi-fork-%d-%d..%d", (int)getpid(), i, j);
            assert_null(kvi__redis_names_get(t, name, err, sizeof err));
            /* ASan's allocator would block the child, valgrind fail it (kvitest.h): the
             * lookups are let end first, so only the child's own is
             * checked there. */
            if (KVI_TEST_ASAN || kvi_test_valgrind())
                kvi__redis_names_wait(t, name, now_ms() + 3000);
        }
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(child_resolves(t));
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            print_message("  child %d: %s %d\n", i, WIFEXITED(status) ? "exit" : "signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            stuck++;
        }
        kvi__redis_names_free(t); /* waits for the parent's lookups */
    }
    print_message("  %d of %d children did not resolve their own name\n", stuck, FORKS);
    assert_int_equal(stuck, 0);
}

/* Freeing the table while a lookup is under way does not wait for the
 * resolver: the lookup's thread frees the entry when it ends (under ASan
 * or valgrind: nothing leaks, nothing is used after its release). */
static void test_free_does_not_wait_for_a_lookup_under_way(void **state)
{
    (void)state;
    struct kvi_redis_names *t = kvi__redis_names_new();
    assert_non_null(t);
    char err[256];
    assert_null(kvi__redis_names_get(t, SLOW_NAME, err, sizeof err));
    assert_non_null(strstr(err, "is being resolved"));
    int64_t t0 = now_ms();
    kvi__redis_names_free(t);
    int64_t dt = now_ms() - t0;
    print_message("  freed in %lld ms with a %d ms lookup under way\n", (long long)dt, SLOW_MS);
    /* Let the thread end (and free its entry) before the program's end. */
    kvi_test_sleep_ms(SLOW_MS + 500);
    assert_true(dt < SLOW_MS / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_failed_name_reports_the_reason_to_every_thread),
        cmocka_unit_test(test_a_name_failed_at_definition_keeps_its_reason),
        cmocka_unit_test(test_a_child_after_fork_resolves_its_own_names),
        cmocka_unit_test(test_free_does_not_wait_for_a_lookup_under_way),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
