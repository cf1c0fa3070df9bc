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

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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
    kvi__sh_config cfg = {.name = f->name, .evict = -1};
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

/* One process's known work on the shared collection of url: hits fetches
 * of "h" (stored), misses fetches of absent keys, and one of each other
 * kind: a remove and a ttl of absent keys (2 misses), a counter read
 * (1 hit), an add on a non-counter (1 error), a store, a keys walk and a
 * ping.  So ops = hits + misses + 7, hits + 1, misses + 2, errors 1. */
static int known_work(const char *url, int hits, int misses)
{
    kvi *k = NULL;
    int ok = kvi_new(&k) == KVI_OK && kvi_add_url(k, url) == KVI_OK;
    for (int i = 0; ok && i < hits; i++) {
        kvi_value v = KVI_VALUE_INIT;
        ok = kvi_fetch(k, "local", "h", 1, &v) == KVI_OK;
        kvi_value_free(&v);
    }
    for (int i = 0; ok && i < misses; i++) {
        kvi_value v = KVI_VALUE_INIT;
        char key[32];
        snprintf(key, sizeof key, "absent-%d", i);
        ok = kvi_fetch(k, "local", key, strlen(key), &v) == KVI_NOT_FOUND;
    }
    int64_t n = 0;
    kvi_reply *r = NULL;
    ok = ok && kvi_remove(k, "local", "absent", 6) == KVI_NOT_FOUND;
    ok = ok && kvi_ttl(k, "local", "absent", 6, &n) == KVI_NOT_FOUND;
    ok = ok && kvi_counter_fetch(k, "local", "c", 1, &n) == KVI_OK;
    ok = ok && kvi_add(k, "local", "h", 1, 1, 0, &n) == KVI_E_NOT_A_COUNTER;
    ok = ok && kvi_store(k, "local", "s", 1, "x", 1, 0) == KVI_OK;
    ok = ok && kvi_keys(k, "local", "*", 1, &r) == KVI_OK;
    kvi_reply_free(r);
    ok = ok && kvi_ping(k, "local") == KVI_OK;
    kvi_free(k);
    return ok;
}

static void test_operation_counts_are_every_processes(void **state)
{
    fx *f = *state;
    kvi *k = ctx(f->url, KVI_OK); /* stays attached: 3 ops of its own */
    assert_int_equal(kvi_store(k, "local", "h", 1, "hit", 3, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "c", 1, "7", 1, 0), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "h", 1, &v), KVI_OK);
    kvi_value_free(&v);
    const int hits[3] = {100, 7, 0}, misses[3] = {3, 50, 11};
    pid_t pids[3];
    for (int i = 0; i < 3; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(known_work(f->url, hits[i], misses[i]) ? 0 : 1);
    }
    for (int i = 0; i < 3; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* A third process reads the totals (reading counts nothing). */
    kvi *look = ctx(f->url, KVI_OK);
    kvi_stats st;
    assert_int_equal(kvi_stats_get(look, "local", &st), KVI_OK);
    assert_int_equal(st.shared, 1);
    assert_int_equal(st.processes, 2); /* k and look */
    assert_int_equal(st.ops, 3 + (100 + 3 + 7) + (7 + 50 + 7) + (0 + 11 + 7));
    assert_int_equal(st.hits, 1 + (100 + 1) + (7 + 1) + (0 + 1));
    assert_int_equal(st.misses, (3 + 2) + (50 + 2) + (11 + 2));
    assert_int_equal(st.errors, 3);
    /* The same totals through the attached writer. */
    kvi_stats st2;
    assert_int_equal(kvi_stats_get(k, "local", &st2), KVI_OK);
    assert_int_equal(st2.ops, st.ops);
    assert_int_equal(st2.hits, st.hits);
    /* A read-only look reads them from its copy. */
    char ro[600];
    snprintf(ro, sizeof ro, "local://?shm=%s&shm_readonly=yes", f->name);
    kvi *rk = ctx(ro, KVI_OK);
    assert_int_equal(kvi_stats_get(rk, "local", &st2), KVI_OK);
    assert_int_equal(st2.shared, 1);
    assert_int_equal(st2.ops, st.ops);
    assert_int_equal(st2.misses, st.misses);
    assert_int_equal(st2.errors, st.errors);
    assert_int_equal(st2.processes, 0);
    kvi_free(rk);
    kvi_free(look);
    kvi_free(k);
}

static void test_batch_fetches_are_counted_in_the_segment(void **state)
{
    fx *f = *state;
    kvi *k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "b1", 2, "1", 1, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local", "b2", 2, "2", 1, 0), KVI_OK);
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    const char *keys[] = {"b1", "b2", "x1", "b1", "x2", "x3"}; /* 3 hits, 3 misses */
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(kvi_batch_fetch(b, "local", keys[i], 2), KVI_OK);
    assert_int_equal(kvi_batch_run(b, 10000), KVI_OK);
    kvi_batch_free(b);
    kvi *look = ctx(f->url, KVI_OK);
    kvi_stats st;
    assert_int_equal(kvi_stats_get(look, "local", &st), KVI_OK);
    assert_int_equal(st.ops, 2 + 6);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 3);
    kvi_free(look);
    kvi_free(k);
}

static void test_snapshot_loads_are_not_counted_as_operations(void **state)
{
    fx *f = *state;
    char url[700];
    snprintf(url, sizeof(url), "local://?shm=%s&max_memory=2m&file=%s", f->name, f->file);
    kvi *k = ctx(url, KVI_OK);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(kvi_store(k, "local", key, strlen(key), "v", 1, 0), KVI_OK);
    }
    kvi_free(k); /* saves 20 entries */
    shm_unlink(f->shm);
    k = ctx(url, KVI_OK); /* loads them into a new segment */
    kvi_stats st;
    assert_int_equal(kvi_stats_get(k, "local", &st), KVI_OK);
    assert_int_equal(st.entries, 20);
    assert_int_equal(st.ops, 0);
    kvi_free(k);
}

/* Writes crafted operation counts into a closed segment: every shard's
 * zeroed, then what set() puts. */
static void craft_counts(fx *f, void (*set)(struct sh_header *h, struct sh_shard *sh))
{
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    struct sh_header *h = (struct sh_header *)p;
    struct sh_shard *sh = (struct sh_shard *)(p + h->shards_off);
    for (uint32_t i = 0; i < SH_SHARDS; i++)
        sh[i].ops = sh[i].hits = sh[i].misses = 0;
    atomic_store(&h->ops_other, 0);
    atomic_store(&h->errors, 0);
    set(h, sh);
    munmap(p, len);
}

static void more_hits_than_ops(struct sh_header *h, struct sh_shard *sh)
{
    sh[0].ops = 10;
    sh[0].hits = 50;
    sh[0].misses = 50;
    sh[1].ops = 4;
    sh[1].hits = 1;
    sh[1].misses = 9;
    atomic_store(&h->errors, 1000);
}

static void counts_that_overflow(struct sh_header *h, struct sh_shard *sh)
{
    for (uint32_t i = 0; i < 3; i++) {
        sh[i].ops = UINT64_MAX - 1u;
        sh[i].hits = UINT64_MAX - 1u;
    }
    sh[3].ops = 5;
    sh[3].misses = 5;
    atomic_store(&h->ops_other, UINT64_MAX);
    atomic_store(&h->errors, UINT64_MAX);
}

static void test_damaged_operation_counts_are_clamped(void **state)
{
    fx *f = *state;
    craft_counts(f, more_hits_than_ops);
    kvi *k = ctx(f->url, KVI_OK);
    kvi_stats st;
    assert_int_equal(kvi_stats_get(k, "local", &st), KVI_OK);
    assert_int_equal(st.ops, 14);
    assert_int_equal(st.hits, 10 + 1);
    assert_int_equal(st.misses, 0 + 3);
    assert_int_equal(st.errors, 0); /* no operation is left to have failed */
    kvi_free(k);
    shm_unlink(f->shm);

    craft_counts(f, counts_that_overflow);
    k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_stats_get(k, "local", &st), KVI_OK);
    assert_true(st.ops == UINT64_MAX); /* saturated, not wrapped */
    assert_true(st.hits <= st.ops && st.misses <= st.ops - st.hits &&
                st.errors <= st.ops - st.hits - st.misses);
    assert_true(st.hits == UINT64_MAX);
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

/* ---- hostile segments: planted by another user, damaged links ---------- */

/* Runs fn as uid/gid 65534 (nobody) in a child; returns its exit status. */
static int as_nobody(void (*fn)(fx *), fx *f)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(90);
        fn(f);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The attacker: makes the segment root will open, with a password in it. */
static void plant(fx *f)
{
    kvi *k = NULL;
    if (kvi_new(&k) != KVI_OK || kvi_add_url(k, f->url) != KVI_OK ||
        kvi_store(k, "local", "passwd_u0001", 12, "evil", 4, 0) != KVI_OK)
        _exit(91);
    kvi_free(k);
}

static uint64_t file_sum(fx *f)
{
    size_t len;
    unsigned char *p = map_raw(f, &len);
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211u;
    munmap(p, len);
    return h;
}

static void test_segment_planted_by_another_user_is_refused_even_for_root(void **state)
{
    fx *f = *state;
    if (geteuid() != 0) {
        KVI_TEST_SKIP_CASE("test_segment_planted_by_another_user_is_refused_even_for_root "
                           "needs root (setuid to nobody)");
    }
    assert_int_equal(as_nobody(plant, f), 0);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    expect_refused(f, KVI_E_AUTH, "belongs to uid 65534");
    /* An explicit read-only look sees it and changes nothing. */
    uint64_t before = file_sum(f);
    char url[600];
    snprintf(url, sizeof(url), "local://?shm=%s&shm_readonly=yes", f->name);
    kvi *k = ctx(url, KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "passwd_u0001", 12, &v), KVI_OK);
    assert_memory_equal(v.data, "evil", 4);
    kvi_value_free(&v);
    assert_int_equal(kvi_store(k, "local", "x", 1, "1", 1, 0), KVI_E_UNSUPPORTED);
    assert_int_equal(kvi_remove(k, "local", "passwd_u0001", 12), KVI_E_UNSUPPORTED);
    kvi_free(k);
    assert_true(file_sum(f) == before);
}

static void test_looking_at_a_missing_segment_never_creates_one(void **state)
{
    fx *f = *state;
    const char *opts[] = {"shm_create=no", "shm_readonly=yes"};
    for (size_t i = 0; i < 2; i++) {
        char url[600];
        snprintf(url, sizeof(url), "local://?shm=%s&%s", f->name, opts[i]);
        kvi *k = ctx(url, KVI_E_IO);
        assert_non_null(strstr(kvi_errmsg(k), "no such shared collection"));
        kvi_free(k);
        assert_int_equal(access(f->path, F_OK), -1);
    }
    /* An existing one is attached to. */
    create(f);
    char url[600];
    snprintf(url, sizeof(url), "local://?shm=%s&shm_create=no", f->name);
    kvi *k = ctx(url, KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "a", 1, &v), KVI_OK);
    kvi_value_free(&v);
    kvi_free(k);
}

static void test_hard_linked_segment_is_refused(void **state)
{
    fx *f = *state;
    create(f);
    char other[200];
    snprintf(other, sizeof(other), "%s.link", f->path);
    assert_int_equal(link(f->path, other), 0);
    expect_refused(f, KVI_E_AUTH, "one link");
    unlink(other);
}

/* The link in the segment that leads to key (its bucket head). */
static uint32_t *bucket_of(unsigned char *p, const char *key)
{
    struct sh_header *h = (struct sh_header *)p;
    uint64_t hv = kvi__lt_hash(h->seed, key, strlen(key));
    struct sh_shard *sh = (struct sh_shard *)(p + h->shards_off) + ((hv >> 58) & (SH_SHARDS - 1u));
    return (uint32_t *)(p + sh->buckets_off) + (hv & (h->nbuckets - 1u));
}

static struct sh_shard *shard_of_key(unsigned char *p, const char *key)
{
    struct sh_header *h = (struct sh_header *)p;
    uint64_t hv = kvi__lt_hash(h->seed, key, strlen(key));
    return (struct sh_shard *)(p + h->shards_off) + ((hv >> 58) & (SH_SHARDS - 1u));
}

/* Stores key "a", lets damage() change the segment, then expects every
 * operation on "a" and a walk to be refused as damaged (never followed). */
static void expect_damage_refused(fx *f, void (*damage)(unsigned char *p, size_t len))
{
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    damage(p, len);
    munmap(p, len);
    kvi *k = ctx(f->url, KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "a", 1, &v), KVI_E_CORRUPT);
    if (!strstr(kvi_errmsg(k), "damaged") || !strstr(kvi_errmsg(k), f->path))
        fail_msg("message '%s'", kvi_errmsg(k));
    /* A batch's run of fetches (the tables' fetch_ops) refuses it too, with
     * the same message, and still answers the other key. */
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "local", "zz-absent", 9), KVI_OK);
    assert_int_equal(kvi_batch_fetch(b, "local", "a", 1), KVI_OK);
    assert_int_equal(kvi_batch_run(b, 0), KVI_E_CORRUPT);
    assert_int_equal(kvi_batch_status(b, 0), KVI_NOT_FOUND);
    assert_int_equal(kvi_batch_status(b, 1), KVI_E_CORRUPT);
    if (!strstr(kvi_batch_errmsg(b, 1), "damaged") || !strstr(kvi_batch_errmsg(b, 1), f->path))
        fail_msg("batch message '%s'", kvi_batch_errmsg(b, 1));
    kvi_batch_free(b);
    assert_int_equal(kvi_store(k, "local", "a", 1, "2", 1, 0), KVI_E_CORRUPT);
    int64_t n = 0;
    assert_int_equal(kvi_add(k, "local", "a", 1, 1, 0, &n), KVI_E_CORRUPT);
    assert_int_equal(kvi_remove(k, "local", "a", 1), KVI_E_CORRUPT);
    kvi_reply *r = NULL;
    assert_int_equal(kvi_keys(k, "local", "*", 1, &r), KVI_E_CORRUPT);
    assert_null(r);
    kvi_free(k);
}

static void link_past_the_mapping(unsigned char *p, size_t len)
{
    (void)len;
    *bucket_of(p, "a") = 0xFFFFFFF0u;
}

static void link_into_the_header(unsigned char *p, size_t len)
{
    (void)len;
    *bucket_of(p, "a") = 1u;
}

static void link_into_another_shard(unsigned char *p, size_t len)
{
    (void)len;
    struct sh_shard *sh = shard_of_key(p, "a");
    struct sh_shard *other = sh == (struct sh_shard *)(p + SH_SHARDS_OFF) ? sh + 1 : sh - 1;
    *bucket_of(p, "a") = (uint32_t)(other->arena_off / SH_GRAN);
}

static struct sh_ent *entry_a(unsigned char *p)
{
    return (struct sh_ent *)(p + (size_t)*bucket_of(p, "a") * SH_GRAN);
}

static void value_length_past_the_block(unsigned char *p, size_t len)
{
    (void)len;
    entry_a(p)->vlen = 0xFFFFFFF0u;
}

static void key_length_past_the_block(unsigned char *p, size_t len)
{
    (void)len;
    entry_a(p)->klen = 0xFFFFu;
}

static void link_to_a_free_block(unsigned char *p, size_t len)
{
    (void)len;
    entry_a(p)->state = SH_FREE;
}

static void chain_loops(unsigned char *p, size_t len)
{
    (void)len;
    /* "a" links to itself; the walk must stop, and so must a lookup of
     * "a" once its entry looks like another key's. */
    struct sh_ent *e = entry_a(p);
    e->next = *bucket_of(p, "a");
    e->hash ^= 1u;
}

static void test_link_past_the_mapping_is_refused(void **state)
{
    expect_damage_refused(*state, link_past_the_mapping);
}

static void test_link_into_the_header_is_refused(void **state)
{
    expect_damage_refused(*state, link_into_the_header);
}

static void test_link_into_another_shard_is_refused(void **state)
{
    expect_damage_refused(*state, link_into_another_shard);
}

static void test_value_length_past_its_block_is_refused(void **state)
{
    expect_damage_refused(*state, value_length_past_the_block);
}

static void test_key_length_past_its_block_is_refused(void **state)
{
    expect_damage_refused(*state, key_length_past_the_block);
}

static void test_link_to_a_free_block_is_refused(void **state)
{
    expect_damage_refused(*state, link_to_a_free_block);
}

static void test_chain_that_loops_is_refused(void **state)
{
    expect_damage_refused(*state, chain_loops);
}

static void test_damaged_shard_offsets_are_refused_at_attach(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 3; i++) {
        create(f);
        size_t len;
        unsigned char *p = map_raw(f, &len);
        struct sh_shard *sh = shard_of_key(p, "a");
        if (i == 0)
            sh->buckets_off = UINT64_MAX - 8u; /* wraps past the end when added to */
        else if (i == 1)
            sh->arena_off = 64; /* the header */
        else
            sh->top = sh->arena_end + SH_GRAN;
        munmap(p, len);
        expect_refused(f, KVI_E_CORRUPT, "damaged shard table");
        shm_unlink(f->shm);
    }
}

static void test_undo_count_past_the_log_is_not_followed(void **state)
{
    fx *f = *state;
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    shard_of_key(p, "a")->log_n = 1000u;
    munmap(p, len);
    kvi *k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "a", 1, "2", 1, 0), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "a", 1, &v), KVI_OK);
    kvi_value_free(&v);
    kvi_free(k);
}

static void test_free_list_head_past_the_mapping_is_dropped(void **state)
{
    fx *f = *state;
    create(f);
    size_t len;
    unsigned char *p = map_raw(f, &len);
    struct sh_shard *sh = shard_of_key(p, "a");
    /* The class of a 32-byte block ("a" and a 1-byte value take 26). */
    sh->bits[0] |= 2u;
    sh->heads[1] = 0xFFFFFFF0u;
    munmap(p, len);
    kvi *k = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "a", 1, "2", 1, 0), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local", "a", 1, &v), KVI_OK);
    assert_memory_equal(v.data, "2", 1);
    kvi_value_free(&v);
    kvi_free(k);
}

/* ---- the snapshot of a shared collection is never lost ------------------- */

/* Writes f->file holding key "saved" (through a segment of its own, then
 * removed). */
static void write_snapshot(fx *f)
{
    char url[700];
    snprintf(url, sizeof(url), "local://?shm=%s&max_memory=2m&file=%s", f->name, f->file);
    kvi *k = ctx(url, KVI_OK);
    assert_int_equal(kvi_store(k, "local", "saved", 5, "yes", 3, 0), KVI_OK);
    kvi_free(k);
    assert_int_equal(access(f->file, F_OK), 0);
    assert_int_equal(shm_unlink(f->shm), 0);
}

static void expect_key(kvi *k, const char *key, const char *val)
{
    kvi_value v = KVI_VALUE_INIT;
    kvi_status st = kvi_fetch(k, "local", key, strlen(key), &v);
    if (st != KVI_OK)
        fail_msg("fetch %s: %s", key, kvi_status_name(st));
    assert_int_equal(v.len, strlen(val));
    assert_memory_equal(v.data, val, v.len);
    kvi_value_free(&v);
}

/* After a reboot an operator looks first (no file=) and so makes the
 * segment; the server that then opens it with file= still loads its
 * snapshot, and a second server process does not load it again. */
static void test_snapshot_is_loaded_when_a_look_made_the_segment(void **state)
{
    fx *f = *state;
    write_snapshot(f);
    kvi *look = ctx(f->url, KVI_OK); /* creates the segment, no file= */
    char url[700];
    snprintf(url, sizeof(url), "local://?shm=%s&file=%s", f->name, f->file);
    kvi *server = ctx(url, KVI_OK);
    expect_key(server, "saved", "yes");
    expect_key(look, "saved", "yes");
    assert_int_equal(kvi_store(server, "local", "saved", 5, "newer", 5, 0), KVI_OK);
    kvi *second = ctx(url, KVI_OK); /* the snapshot is loaded already */
    expect_key(second, "saved", "newer");
    kvi_free(second);
    kvi_free(server);
    kvi_free(look);
}

/* The server (file=) leaves while an operator's look (no file=) is still
 * attached: the server is the last that can save, so it saves. */
static void test_snapshot_is_written_when_a_look_outlives_the_server(void **state)
{
    fx *f = *state;
    char url[700];
    snprintf(url, sizeof(url), "local://?shm=%s&max_memory=2m&file=%s", f->name, f->file);
    kvi *server = ctx(url, KVI_OK);
    kvi *look = ctx(f->url, KVI_OK);
    assert_int_equal(kvi_store(server, "local", "s", 1, "server", 6, 0), KVI_OK);
    assert_int_equal(kvi_store(look, "local", "l", 1, "look", 4, 0), KVI_OK);
    kvi_free(server);
    assert_int_equal(access(f->file, F_OK), 0);
    kvi_free(look);
    /* A new segment loads what the server saved. */
    assert_int_equal(shm_unlink(f->shm), 0);
    kvi *k = ctx(url, KVI_OK);
    expect_key(k, "s", "server");
    expect_key(k, "l", "look");
    kvi_free(k);
}

/* Two server processes with file=: the one that opened first and stored
 * closes first; the other, unchanged since it opened, still writes what
 * the first stored. */
static void test_last_server_saves_what_the_first_stored(void **state)
{
    fx *f = *state;
    char url[700];
    snprintf(url, sizeof(url), "local://?shm=%s&max_memory=2m&file=%s", f->name, f->file);
    kvi *a = ctx(url, KVI_OK);
    assert_int_equal(kvi_store(a, "local", "a", 1, "first", 5, 0), KVI_OK);
    kvi *b = ctx(url, KVI_OK);
    kvi_free(a); /* not the last with file= */
    assert_int_equal(access(f->file, F_OK), -1);
    kvi_free(b);
    assert_int_equal(shm_unlink(f->shm), 0);
    kvi *k = ctx(url, KVI_OK);
    expect_key(k, "a", "first");
    kvi_free(k);
}

/* Stores n keys PREFIX0.. (each its own value) and opens a second handle
 * on the segment, to reach its shards. */
static kvi__sh *stored_and_opened(fx *f, kvi *k, char prefix, int n)
{
    char key[32];
    for (int i = 0; i < n; i++) {
        int len = snprintf(key, sizeof key, "%c%d", prefix, i);
        assert_int_equal(kvi_store(k, "local", key, (size_t)len, key, (size_t)len, 0), KVI_OK);
    }
    kvi__sh_config cfg = {.name = f->name, .evict = -1};
    kvi__sh *s = NULL;
    int created = 0;
    char err[512];
    assert_int_equal(kvi__sh_open(k, &cfg, &s, &created, err, sizeof(err)), KVI_OK);
    return s;
}

/* A child takes the locks of the n shards from `first` on and dies holding
 * them (as a worker killed inside an operation); returns once it is gone,
 * its exit status checked (0: every lock taken). */
static void die_holding_locks(struct sh_shard *first, size_t n)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (size_t i = 0; i < n; i++)
            if (pthread_mutex_lock(&first[i].lock) != 0)
                _exit(1);
        _exit(0); /* dies holding them all */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A batch of k fetching the n keys PREFIX0.. (stored_and_opened), in
 * order (not run). */
static kvi_batch *fetch_batch(kvi *k, char prefix, int n)
{
    char key[32];
    kvi_batch *b = NULL;
    assert_int_equal(kvi_batch_new(k, &b), KVI_OK);
    for (int i = 0; i < n; i++) {
        int kn = snprintf(key, sizeof key, "%c%d", prefix, i);
        assert_int_equal(kvi_batch_fetch(b, "local", key, (size_t)kn), KVI_OK);
    }
    return b;
}

/* A child that dies holding every shard's lock (as a worker killed inside
 * an operation): the next batch of fetches repairs each lock it meets
 * (kvi__sh_lock's dead-owner repair, counted) and answers every key; the
 * shards stay usable afterwards. */
static void test_batch_fetch_repairs_locks_of_a_dead_owner(void **state)
{
    fx *f = *state;
    kvi *k = ctx(f->url, KVI_OK);
    char key[32];
    enum { N = 400 };
    kvi__sh *s = stored_and_opened(f, k, 'd', N);
    kvi__sh_info before, after;
    kvi__sh_info_get(s, &before);
    die_holding_locks(s->shards, SH_SHARDS);
    kvi_batch *b = fetch_batch(k, 'd', N);
    assert_int_equal(kvi_batch_run(b, 0), KVI_OK);
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "d%d", i);
        size_t len = 0;
        const char *v = kvi_batch_value(b, (size_t)i, &len);
        assert_non_null(v);
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(v, key, len);
    }
    kvi_batch_free(b);
    kvi__sh_info_get(s, &after);
    /* One repair per shard the keys meet: the segment's hash seed is
     * random, so 400 keys miss one of the 64 shards about once in 8
     * segments (two CI runs counted 63). */
    unsigned char *p = (unsigned char *)s->h;
    struct sh_shard *first = (struct sh_shard *)(p + ((struct sh_header *)p)->shards_off);
    unsigned char seen[SH_SHARDS] = {0};
    size_t met = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "d%d", i);
        size_t sh = (size_t)(shard_of_key(p, key) - first);
        assert_true(sh < SH_SHARDS);
        met += !seen[sh];
        seen[sh] = 1;
    }
    print_message("  %zu of %d shards met by the keys\n", met, (int)SH_SHARDS);
    assert_true(met > SH_SHARDS / 2);
    assert_int_equal(after.repairs - before.repairs, met);
    /* Usable afterwards, by single calls and batches alike. */
    expect_key(k, "d7", "d7");
    assert_int_equal(kvi_store(k, "local", "d7", 2, "x", 1, 0), KVI_OK);
    expect_key(k, "d7", "x");
    char err[512];
    assert_int_equal(kvi__sh_check(s, err, sizeof(err)), KVI_OK);
    kvi__sh_close(s);
    kvi_free(k);
}

/* A shard whose lock cannot be recovered (its dead owner's lock released
 * without repair): the batch's fetches on it end KVI_E_CORRUPT with the
 * segment's message, the other keys of the run are answered. */
static void test_batch_fetch_on_an_unrecoverable_lock_is_corrupt(void **state)
{
    fx *f = *state;
    kvi *k = ctx(f->url, KVI_OK);
    char key[32];
    enum { N = 200 };
    kvi__sh *s = stored_and_opened(f, k, 'u', N);
    unsigned char *p = (unsigned char *)s->h;
    struct sh_shard *bad = shard_of_key(p, "u0");
    die_holding_locks(bad, 1);
    /* Taken over and released without being made consistent: never again. */
    assert_int_equal(pthread_mutex_lock(&bad->lock), EOWNERDEAD);
    assert_int_equal(pthread_mutex_unlock(&bad->lock), 0);
    /* Several runs: where the CPU has RTM, a run's transactions must not
     * read that shard as free in any of them (one of them aborting at
     * random would hide it). */
    uint64_t elided_before = kvi__sh_elided();
    for (int round = 0; round < 20; round++) {
        kvi_batch *b = fetch_batch(k, 'u', N);
        assert_int_equal(kvi_batch_run(b, 0), KVI_E_CORRUPT);
        size_t corrupt = 0;
        for (int i = 0; i < N; i++) {
            int n = snprintf(key, sizeof key, "u%d", i);
            if (shard_of_key(p, key) == bad) {
                assert_int_equal(kvi_batch_status(b, (size_t)i), KVI_E_CORRUPT);
                if (!strstr(kvi_batch_errmsg(b, (size_t)i), f->path))
                    fail_msg("message '%s'", kvi_batch_errmsg(b, (size_t)i));
                corrupt++;
            } else {
                size_t len = 0;
                const char *v = kvi_batch_value(b, (size_t)i, &len);
                assert_non_null(v);
                assert_memory_equal(v, key, (size_t)n);
            }
        }
        assert_true(corrupt > 0);
        assert_int_equal(kvi_batch_failed(b), corrupt);
        kvi_batch_free(b);
    }
    print_message("  20 runs, %llu transactions committed (%s elision)\n",
                  (unsigned long long)(kvi__sh_elided() - elided_before),
                  kvi__sh_can_elide() ? "with" : "without");
    kvi__sh_close(s);
    kvi_free(k);
}

/* A shard's lock at the instant another locker has set its lock word but
 * not yet its owner (glibc writes the owner after the compare-and-swap):
 * a batch must wait for that lock, not read the shard as free (its
 * transaction, where the CPU has them, reads the lock word itself). */
struct holder {
    pthread_mutex_t *lock;
    int *owner;
    int saved;
    int fd_held[2], fd_release[2];
};

static void *hold_with_owner_unset(void *arg)
{
    struct holder *hd = arg;
    char c = 0;
    if (pthread_mutex_lock(hd->lock) != 0)
        return (void *)1;
    hd->saved = *hd->owner;
    *hd->owner = 0;
    if (write(hd->fd_held[1], "h", 1) != 1 || read(hd->fd_release[0], &c, 1) != 1)
        return (void *)1;
    *hd->owner = hd->saved; /* unlocking checks it is ours */
    return pthread_mutex_unlock(hd->lock) == 0 ? NULL : (void *)1;
}

struct runner {
    kvi_batch *b;
    _Atomic int done;
    _Atomic pid_t tid;
    kvi_status st;
};

static void *run_batch(void *arg)
{
    struct runner *r = arg;
    atomic_store(&r->tid, (pid_t)syscall(SYS_gettid));
    r->st = kvi_batch_run(r->b, 0);
    atomic_store(&r->done, 1);
    return NULL;
}

/* The scheduler state of thread tid of this process ('R', 'S', ...), or 0. */
static char task_state(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    return kvi_test_proc_state(path);
}

/* Waits (up to 10 s) until the batch has ended or its thread sleeps (on a
 * lock: nothing else in a local batch sleeps); 1 when it ended. */
static int ended_or_blocked(struct runner *r)
{
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(&r->done))
            return 1;
        pid_t tid = atomic_load(&r->tid);
        if (tid != 0 && task_state(tid) == 'S')
            return atomic_load(&r->done);
        usleep(1000);
    }
    fail_msg("the batch neither ended nor slept within 10 s");
    return 1;
}

static void test_batch_waits_for_a_lock_whose_owner_is_not_written_yet(void **state)
{
    fx *f = *state;
    kvi *k = ctx(f->url, KVI_OK);
    char key[32];
    enum { N = 200, ROUNDS = 10 };
    kvi__sh *s = stored_and_opened(f, k, 'w', N);
    struct sh_shard *held = shard_of_key((unsigned char *)s->h, "w0");
    /* Several rounds: where the CPU has RTM, the batch's transaction must
     * see the lock word in every one (one aborting at random would take
     * the lock and hide a transaction that reads the shard as free). */
    for (int round = 0; round < ROUNDS; round++) {
        struct holder hd = {.lock = &held->lock, .owner = &held->lock.__data.__owner};
        assert_int_equal(pipe(hd.fd_held), 0);
        assert_int_equal(pipe(hd.fd_release), 0);
        pthread_t th, tr;
        assert_int_equal(pthread_create(&th, NULL, hold_with_owner_unset, &hd), 0);
        char c = 0;
        assert_int_equal(read(hd.fd_held[0], &c, 1), 1);
        struct runner r = {.b = fetch_batch(k, 'w', N)};
        assert_int_equal(pthread_create(&tr, NULL, run_batch, &r), 0);
        int early = ended_or_blocked(&r);
        assert_int_equal(write(hd.fd_release[1], "r", 1), 1);
        void *hret = (void *)1;
        assert_int_equal(pthread_join(th, &hret), 0);
        assert_null(hret);
        assert_int_equal(pthread_join(tr, NULL), 0);
        if (early)
            fail_msg("round %d: the batch ended while a lock of its keys was held (%s elision)",
                     round, kvi__sh_can_elide() ? "with" : "without");
        assert_int_equal(r.st, KVI_OK);
        for (int i = 0; i < N; i++) {
            int n = snprintf(key, sizeof key, "w%d", i);
            size_t len = 0;
            const char *v = kvi_batch_value(r.b, (size_t)i, &len);
            assert_non_null(v);
            assert_int_equal(len, (size_t)n);
            assert_memory_equal(v, key, len);
        }
        kvi_batch_free(r.b);
        for (int i = 0; i < 2; i++) {
            close(hd.fd_held[i]);
            close(hd.fd_release[i]);
        }
    }
    kvi__sh_close(s);
    kvi_free(k);
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
        T(test_operation_counts_are_every_processes),
        T(test_batch_fetches_are_counted_in_the_segment),
        T(test_batch_fetch_repairs_locks_of_a_dead_owner),
        T(test_batch_fetch_on_an_unrecoverable_lock_is_corrupt),
        T(test_batch_waits_for_a_lock_whose_owner_is_not_written_yet),
        T(test_snapshot_loads_are_not_counted_as_operations),
        T(test_damaged_operation_counts_are_clamped),
        T(test_snapshot_is_written_by_the_last_process_to_close),
        T(test_segment_planted_by_another_user_is_refused_even_for_root),
        T(test_looking_at_a_missing_segment_never_creates_one),
        T(test_hard_linked_segment_is_refused),
        T(test_link_past_the_mapping_is_refused),
        T(test_link_into_the_header_is_refused),
        T(test_link_into_another_shard_is_refused),
        T(test_value_length_past_its_block_is_refused),
        T(test_key_length_past_its_block_is_refused),
        T(test_link_to_a_free_block_is_refused),
        T(test_chain_that_loops_is_refused),
        T(test_damaged_shard_offsets_are_refused_at_attach),
        T(test_undo_count_past_the_log_is_not_followed),
        T(test_free_list_head_past_the_mapping_is_dropped),
        T(test_snapshot_is_loaded_when_a_look_made_the_segment),
        T(test_snapshot_is_written_when_a_look_outlives_the_server),
        T(test_last_server_saves_what_the_first_stored),
    };
#undef T
    return cmocka_run_group_tests_name("local_shm", tests, NULL, NULL);
}
