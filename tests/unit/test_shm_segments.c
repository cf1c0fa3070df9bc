/*
 * test_shm_segments.c -- a shared collection (local://?shm=NAME) whose
 * segment was changed behind its back, seen from the public API: a segment
 * cut to another size is KVI_E_CORRUPT (opened or looked at with
 * shm_readonly=yes), and shm_unlink=yes removes it; a name taken by a
 * directory is refused; a segment given to another user after it was made
 * is refused (a read-only look is allowed), and so is one made by another
 * user and then given to us; a look at a segment that does not exist
 * creates nothing.  (test_local_shm.c damages the inside of segments.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvitest.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvi/kvi.h"

static char g_name[64], g_path[128];

static void open_expect(const char *more, kvi_status want, const char *words)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[256];
    snprintf(url, sizeof url, "local://?shm=%s%s", g_name, more);
    kvi_status st = kvi_add_url(k, url);
    if (st != want || (words != NULL && strstr(kvi_errmsg(k), words) == NULL))
        fail_msg("%s: %s '%s', want %s with '%s'", url, kvi_status_name(st), kvi_errmsg(k),
                 kvi_status_name(want), words ? words : "");
    kvi_free(k);
}

/* Makes the segment with one entry and leaves it (closing keeps it). */
static void make_segment(void)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[256];
    snprintf(url, sizeof url, "local://?shm=%s&max_memory=1m", g_name);
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "a", 1, "1", 1, 0), KVI_OK);
    kvi_free(k);
    assert_int_equal(access(g_path, F_OK), 0);
}

static void test_a_segment_cut_short_is_corrupt_and_can_be_unlinked(void **state)
{
    (void)state;
    make_segment();
    struct stat sb;
    assert_int_equal(stat(g_path, &sb), 0);
    assert_int_equal(truncate(g_path, sb.st_size / 2), 0);
    open_expect("", KVI_E_CORRUPT, "wrong size");
    open_expect("&shm_readonly=yes", KVI_E_CORRUPT, "wrong size");
    open_expect("&shm_create=no", KVI_E_CORRUPT, "wrong size");
    /* shm_unlink=yes removes even a segment that cannot be opened. */
    open_expect("&shm_unlink=yes", KVI_E_CORRUPT, NULL);
    assert_int_not_equal(access(g_path, F_OK), 0);
}

static void test_a_segment_grown_is_corrupt(void **state)
{
    (void)state;
    make_segment();
    struct stat sb;
    assert_int_equal(stat(g_path, &sb), 0);
    assert_int_equal(truncate(g_path, sb.st_size + 4096), 0);
    open_expect("", KVI_E_CORRUPT, "the segment has");
    open_expect("&shm_readonly=yes", KVI_E_CORRUPT, "the segment has");
    unlink(g_path);
}

/* Opens url and expects a refusal whose message has words. */
static void refused(const char *more, const char *words)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[256];
    snprintf(url, sizeof url, "local://?shm=%s%s", g_name, more);
    kvi_status st = kvi_add_url(k, url);
    if (st == KVI_OK || strstr(kvi_errmsg(k), words) == NULL)
        fail_msg("%s: %s '%s', want a refusal with '%s'", url, kvi_status_name(st), kvi_errmsg(k),
                 words);
    kvi_free(k);
}

static void test_a_look_creates_nothing(void **state)
{
    (void)state;
    unlink(g_path);
    refused("&shm_readonly=yes", "no such shared collection");
    refused("&shm_create=no", "no such shared collection");
    assert_int_not_equal(access(g_path, F_OK), 0);
}

static void test_a_directory_is_no_segment(void **state)
{
    (void)state;
    unlink(g_path);
    assert_int_equal(mkdir(g_path, 0700), 0);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[256];
    snprintf(url, sizeof url, "local://?shm=%s&shm_readonly=yes", g_name);
    kvi_status st = kvi_add_url(k, url);
    assert_int_not_equal(st, KVI_OK);
    kvi_free(k);
    snprintf(url, sizeof url, "local://?shm=%s", g_name);
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_not_equal(kvi_add_url(k, url), KVI_OK);
    kvi_free(k);
    assert_int_equal(rmdir(g_path), 0);
}

static void test_a_segment_given_away_or_taken_over_is_refused(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        /* Only root can give a file away or make one as another user. */
        KVI_TEST_SKIP_CASE("not root: segments of other users cannot be made here");
    }
    /* Made by us, given to another user: refused, a look is allowed. */
    make_segment();
    assert_int_equal(chown(g_path, 65534, 65534), 0);
    open_expect("", KVI_E_AUTH, "belongs to uid 65534 (nobody), not to this user");
    open_expect("&shm_readonly=yes", KVI_OK, NULL);
    unlink(g_path);
    /* Made by another user (a child as uid 65534), then given to us. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        kvi *k = NULL;
        char url[256];
        snprintf(url, sizeof url, "local://?shm=%s&max_memory=1m", g_name);
        if (kvi_new(&k) != KVI_OK || kvi_add_url(k, url) != KVI_OK)
            _exit(4);
        kvi_free(k);
        _exit(0);
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
    assert_int_equal(chown(g_path, 0, 0), 0);
    open_expect("", KVI_E_AUTH, "was made by uid 65534 but belongs to uid 0");
    unlink(g_path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_name, sizeof g_name, "kvi-segtest-%ld", (long)getpid());
    snprintf(g_path, sizeof g_path, "/dev/shm/kvi.%s", g_name);
    unlink(g_path);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rmdir(g_path);
    unlink(g_path);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_segment_cut_short_is_corrupt_and_can_be_unlinked),
        cmocka_unit_test(test_a_segment_grown_is_corrupt),
        cmocka_unit_test(test_a_look_creates_nothing),
        cmocka_unit_test(test_a_directory_is_no_segment),
        cmocka_unit_test(test_a_segment_given_away_or_taken_over_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
