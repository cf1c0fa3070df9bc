/*
 * test_local_shm.c -- the shared local collection (local://?shm=NAME):
 * sharing across processes, the segment's safety checks (magic, layout,
 * checksum, size, owner, mode), options that contradict each other or the
 * segment, explicit unlinking, a too-small max_memory, LRU room for small
 * writes, statistics across processes and snapshots by the last closer.
 * Every test uses its own segment name (pid + test) and removes it.
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

#include "engines/local/shm.h"
#include "engines/local/shm_internal.h"
#include "kvi/kvi.h"

typedef struct fx {
    char name[64];
    char shm[80];  /* "/kvi.NAME" */
    char path[96]; /* "/dev/shm/kvi.NAME" */
    char url[512];
    char file[128];
} fx;

static int setup(void **state)
{
    static unsigned n;
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->name, sizeof(f->name), "kvi-unit-%ld-%u", (long)getpid(), ++n);
    snprintf(f->shm, sizeof(f->shm), "/kvi.%s", f->name);
    snprintf(f->path, sizeof(f->path), "/dev/shm/kvi.%s", f->name);
    snprintf(f->url, sizeof(f->url), "local://?shm=%s&max_memory=2m", f->name);
    snprintf(f->file, sizeof(f->file), "/tmp/kvi-unit-shm-%ld-%u.kvis", (long)getpid(), n);
    shm_unlink(f->shm);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    shm_unlink(f->shm);
    unlink(f->file);
    char lock[160];
    snprintf(lock, sizeof(lock), "%s.lock", f->file);
    unlink(lock);
    free(f);
    return 0;
}

static kvi *ctx(const char *url, kvi_status want)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != want)
        fail_msg("%s: %s (%s), wanted %s", url, kvi_status_name(st), kvi_errmsg(k),
                 kvi_status_name(want));
    return k;
}

/* Creates the segment (through the engine) and closes it again. */
static void create(fx *f)
{
    kvi *k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "a", 1, "1", 1, 0), KVI_OK);
    kvi_free(k);
}

/* Maps the segment file to damage it. */
static unsigned char *map_raw(fx *f, size_t *len)
{
    int fd = shm_open(f->shm, O_RDWR, 0);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    *len = (size_t)sb.st_size;
    void *p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(p != MAP_FAILED);
    return p;
}

static void expect_refused(fx *f, kvi_status want, const char *words)
{
    kvi *k = ctx(f->url, want);
    assert_non_null(strstr(kvi_errmsg(k), f->path));
    if (words && !strstr(kvi_errmsg(k), words))
        fail_msg("message '%s' lacks '%s'", kvi_errmsg(k), words);
    kvi_free(k);
}

static void test_forked_child_and_parent_share_the_table(void **state)
{
    fx *f = *state;
    kvi *k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "before", 6, "fork", 4, 0), KVI_OK);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* One child uses the inherited context, as a pre-fork server's
         * worker may; it also opens a context of its own. */
        kvi *k2 = NULL;
        int ok = kvi_store(k, "local", "inherited", 9, "x", 1, 0) == KVI_OK &&
                 kvi_new(&k2) == KVI_OK && kvi_add_url(k2, f->url) == KVI_OK &&
                 kvi_store(k2, "local", "own", 3, "y", 1, 0) == KVI_OK &&
                 kvi_add(k2, "local", "n", 1, 5, 0, NULL) == KVI_OK;
        kvi_free(k2);
        kvi_free(k);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "inherited", 9, &v), KVI_OK);
    kvi_value_free(&v);
    assert_int_equal(kvi_fetch(k, "local", "own", 3, &v), KVI_OK);
    assert_memory_equal(v.data, "y", 1);
    kvi_value_free(&v);
    int64_t n = 0;
    assert_int_equal(kvi_counter_fetch(k, "local", "n", 1, &n), KVI_OK);
    assert_int_equal(n, 5);
    kvi_free(k);
    /* Closing every context keeps the segment and its data. */
    k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_fetch(k, "local", "before", 6, &v), KVI_OK);
    kvi_value_free(&v);
    kvi_free(k);
}

static void test_bad_magic_is_corrupt_naming_the_segment(void **state)
{
    fx *f = *state;
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    p[0] ^= 0xFF;
    munmap(p, len);
    expect_refused(f, KVI_E_CORRUPT, "magic");
}

/* A creator killed after sizing the segment but before formatting it
 * leaves zeros: the next opener makes it (after a short wait). */
static void test_segment_whose_creator_died_is_made_again(void **state)
{
    fx *f = *state;
    int fd = shm_open(f->shm, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 2 << 20), 0);
    close(fd);
    kvi *k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "a", 1, "1", 1, 0), KVI_OK);
    kvi_free(k);
    /* One that is not ours and not ready is left alone. */
    size_t len;
    unsigned char *p = map_raw(f, &len);
    memcpy(p, "SOMEONE!", 8);
    atomic_store(&((struct sh_header *)p)->ready, 0u);
    munmap(p, len);
    expect_refused(f, KVI_E_CORRUPT, "magic");
}

static void test_other_layout_version_is_corrupt(void **state)
{
    fx *f = *state;
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    ((struct sh_header *)p)->layout = SH_LAYOUT + 1u;
    munmap(p, len);
    expect_refused(f, KVI_E_CORRUPT, "layout version");
}

static void test_damaged_header_is_corrupt(void **state)
{
    fx *f = *state;
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    ((struct sh_header *)p)->nbuckets ^= 1u;
    munmap(p, len);
    expect_refused(f, KVI_E_CORRUPT, "checksum");
}

static void test_segment_of_another_size_is_corrupt(void **state)
{
    fx *f = *state;
    create(f);
    int fd = shm_open(f->shm, O_RDWR, 0);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 3 << 20), 0);
    close(fd);
    snprintf(f->url, sizeof(f->url), "local://?shm=%s", f->name);
    expect_refused(f, KVI_E_CORRUPT, "bytes");
}

static void test_wider_mode_than_asked_is_auth(void **state)
{
    fx *f = *state;
    create(f);
    assert_int_equal(chmod(f->path, 0666), 0);
    expect_refused(f, KVI_E_AUTH, "wider");
    /* Asking for that mode is accepted. */
    snprintf(f->url, sizeof(f->url), "local://?shm=%s&shm_mode=0666", f->name);
    kvi *k = ctx(f->url, KVI_OK);
    kvi_free(k);
}

static void test_new_segment_has_mode_0600(void **state)
{
    fx *f = *state;
    mode_t old = umask(0);
    create(f);
    umask(old);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

static void test_segment_of_another_user_is_auth(void **state)
{
    fx *f = *state;
    if (geteuid() != 0) {
        /* Only root can give a segment to another user. */
        KVI_TEST_SKIP_CASE("test_segment_of_another_user_is_auth needs root (chown)");
    }
    create(f);
    assert_int_equal(chown(f->path, 65534, 65534), 0);
    expect_refused(f, KVI_E_AUTH, "uid");
}

static void test_options_that_contradict_the_segment_are_refused(void **state)
{
    fx *f = *state;
    create(f);
    char url[600];
    snprintf(url, sizeof(url), "local://?shm=%s&max_memory=4m", f->name);
    kvi *k = ctx(url, KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "max_memory"));
    kvi_free(k);
    snprintf(url, sizeof(url), "local://?shm=%s&evict=lru", f->name);
    k = ctx(url, KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "evict"));
    kvi_free(k);
    /* Without max_memory (an operator's kvi) it attaches. */
    snprintf(url, sizeof(url), "local://?shm=%s", f->name);
    k = ctx(url, KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "a", 1, &v), KVI_OK);
    kvi_value_free(&v);
    kvi_free(k);
}

static void test_options_that_make_no_sense_together_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *url, *names;
    } bad[] = {
        {"local://?shm_mode=0600", "shm_mode"},
        {"local://?shm_unlink=yes", "shm_unlink"},
        {"local://?shm=x1&max_memory=0", "max_memory"},
        {"local://?shm=x1&shm_mode=0644x", "shm_mode"},
        {"local://?shm=x1&shm_mode=0400", "shm_mode"},
        {"local://?shm=a/b", "shm"},
        {"local://?shm=", "shm"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kvi *k = ctx(bad[i].url, KVI_E_INVALID);
        if (!strstr(kvi_errmsg(k), bad[i].names))
            fail_msg("%s: message '%s' does not name %s", bad[i].url, kvi_errmsg(k), bad[i].names);
        kvi_free(k);
    }
    assert_int_equal(access("/dev/shm/kvi.x1", F_OK), -1);
}

static void test_too_small_max_memory_is_refused_with_the_minimum(void **state)
{
    fx *f = *state;
    snprintf(f->url, sizeof(f->url), "local://?shm=%s&max_memory=512k&evict=lru", f->name);
    kvi *k = ctx(f->url, KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "1m"));
    kvi_free(k);
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_shm_unlink_removes_the_segment(void **state)
{
    fx *f = *state;
    create(f);
    char url[600];
    snprintf(url, sizeof(url), "local://?shm=%s&shm_unlink=yes", f->name);
    kvi *k = ctx(url, KVI_OK);
    assert_int_equal(access(f->path, F_OK), 0);
    kvi_free(k);
    assert_int_equal(access(f->path, F_OK), -1);
    /* A damaged one too, although it cannot be opened. */
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    p[3] ^= 0x01;
    munmap(p, len);
    k = ctx(url, KVI_E_CORRUPT);
    assert_non_null(strstr(kvi_errmsg(k), "removed"));
    kvi_free(k);
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_lru_makes_room_for_any_small_write(void **state)
{
    fx *f = *state;
    snprintf(f->url, sizeof(f->url), "local://?shm=%s&max_memory=1m&evict=lru", f->name);
    kvi *k = ctx(f->url, KVI_OK);
    char key[32], big[6000];
    memset(big, 'b', sizeof(big));
    /* Fill with values of mixed sizes so the arenas are carved in pieces
     * of every size, then store many small ones: each must fit. */
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(key, sizeof(key), "big:%d", i);
        kvi_status st = kvi_store(k, "local", key, (size_t)n, big, (size_t)(100 + i % 5000), 0);
        if (st != KVI_OK && st != KVI_E_STORE_FULL)
            fail_msg("store big:%d: %s", i, kvi_status_name(st));
    }
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(key, sizeof(key), "s:%d", i);
        kvi_status st = kvi_store(k, "local", key, (size_t)n, "v", 1, 0);
        if (st != KVI_OK)
            fail_msg("small store %d: %s (%s)", i, kvi_status_name(st), kvi_errmsg(k));
    }
    /* And the largest entry fits once enough is evicted. */
    kvi__sh_config cfg = {f->name, 0, -1, 0, 0};
    kvi__sh *s = NULL;
    int created = 0;
    char err[512];
    assert_int_equal(kvi__sh_open(k, &cfg, &s, &created, err, sizeof(err)), KVI_OK);
    size_t max = (size_t)kvi__sh_max_entry(s) - 24u - 4u;
    char *huge = calloc(1, max);
    assert_non_null(huge);
    assert_int_equal(kvi_store(k, "local", "huge", 4, huge, max, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "huge", 4, huge, max + 64u, 0), KVI_E_STORE_FULL);
    free(huge);
    kvi_stats st;
    assert_int_equal(kvi_stats_get(k, "local", &st), KVI_OK);
    assert_true(st.evicted > 0);
    assert_int_equal(kvi__sh_check(s, err, sizeof(err)), KVI_OK);
    kvi__sh_close(s);
    kvi_free(k);
}

static void test_evict_none_answers_store_full_and_changes_nothing(void **state)
{
    fx *f = *state;
    snprintf(f->url, sizeof(f->url), "local://?shm=%s&max_memory=1m&evict=none", f->name);
    kvi *k = ctx(f->url, KVI_OK);
    char key[32], val[1000];
    memset(val, 'x', sizeof(val));
    int full = 0, i;
    for (i = 0; i < 5000 && !full; i++) {
        int n = snprintf(key, sizeof(key), "k:%d", i);
        kvi_status st = kvi_store(k, "local", key, (size_t)n, val, sizeof(val), 0);
        if (st == KVI_E_STORE_FULL)
            full = 1;
        else
            assert_int_equal(st, KVI_OK);
    }
    assert_true(full);
    assert_non_null(strstr(kvi_errmsg(k), "full"));
    int n = snprintf(key, sizeof(key), "k:%d", i - 1);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", key, (size_t)n, &v), KVI_NOT_FOUND);
    kvi_stats st;
    assert_int_equal(kvi_stats_get(k, "local", &st), KVI_OK);
    assert_int_equal(st.evicted, 0);
    assert_int_equal(st.entries, (uint64_t)(i - 1));
    kvi_free(k);
}

static void test_stats_are_counted_across_processes(void **state)
{
    fx *f = *state;
    kvi *k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "h", 1, "1", 1, 0), KVI_OK);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kvi *k2 = NULL;
        int ok = kvi_new(&k2) == KVI_OK && kvi_add_url(k2, f->url) == KVI_OK;
        for (int i = 0; ok && i < 10; i++) {
            kvi_value v = KVI_VALUE_INIT;
            ok = kvi_fetch(k2, "local", "h", 1, &v) == KVI_OK;
            kvi_value_free(&v);
        }
        ok = ok && kvi_store(k2, "local", "h2", 2, "2", 1, 0) == KVI_OK;
        kvi_free(k2);
        kvi_free(k);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kvi_stats st;
    assert_int_equal(kvi_stats_get(k, "local", &st), KVI_OK);
    assert_int_equal(st.hits, 10);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 5);
    kvi_free(k);
}

static void test_snapshot_is_written_by_the_last_process_to_close(void **state)
{
    fx *f = *state;
    char url[700];
    snprintf(url, sizeof(url), "local://?shm=%s&max_memory=2m&file=%s", f->name, f->file);
    kvi *k = ctx(url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "p", 1, "parent", 6, 0), KVI_OK);
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kvi *k2 = NULL;
        int ok = kvi_new(&k2) == KVI_OK && kvi_add_url(k2, url) == KVI_OK;
        char c = ok ? 'y' : 'n';
        ok = write(done[1], &c, 1) == 1 && ok;
        /* Wait until the parent has closed, then write and close last. */
        ok = read(go[0], &c, 1) == 1 && ok;
        ok = ok && kvi_store(k2, "local", "c", 1, "child", 5, 0) == KVI_OK;
        kvi_free(k2);
        kvi_free(k);
        _exit(ok ? 0 : 1);
    }
    char c = 0;
    assert_int_equal(read(done[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    kvi_free(k); /* not the last: the child is attached */
    assert_int_equal(access(f->file, F_OK), -1);
    assert_int_equal(write(go[1], "g", 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(access(f->file, F_OK), 0);
    /* A new segment loads the file. */
    assert_int_equal(shm_unlink(f->shm), 0);
    k = ctx(url, KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "c", 1, &v), KVI_OK);
    assert_memory_equal(v.data, "child", 5);
    kvi_value_free(&v);
    assert_int_equal(kvi_fetch(k, "local", "p", 1, &v), KVI_OK);
    assert_memory_equal(v.data, "parent", 6);
    kvi_value_free(&v);
    kvi_free(k);
    close(go[0]);
    close(go[1]);
    close(done[0]);
    close(done[1]);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_forked_child_and_parent_share_the_table),
        T(test_bad_magic_is_corrupt_naming_the_segment),
        T(test_segment_whose_creator_died_is_made_again),
        T(test_other_layout_version_is_corrupt),
        T(test_damaged_header_is_corrupt),
        T(test_segment_of_another_size_is_corrupt),
        T(test_wider_mode_than_asked_is_auth),
        T(test_new_segment_has_mode_0600),
        T(test_segment_of_another_user_is_auth),
        T(test_options_that_contradict_the_segment_are_refused),
        T(test_options_that_make_no_sense_together_are_refused),
        T(test_too_small_max_memory_is_refused_with_the_minimum),
        T(test_shm_unlink_removes_the_segment),
        T(test_lru_makes_room_for_any_small_write),
        T(test_evict_none_answers_store_full_and_changes_nothing),
        T(test_stats_are_counted_across_processes),
        T(test_snapshot_is_written_by_the_last_process_to_close),
    };
#undef T
    return cmocka_run_group_tests_name("local_shm", tests, NULL, NULL);
}
