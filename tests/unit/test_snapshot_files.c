/*
 * test_snapshot_files.c -- the local engine's snapshot file (file=) seen
 * from the public API: a file whose checksums are right but whose records
 * are not is refused with KVI_E_CORRUPT naming the fault and is left as it
 * was; a record that does not fit the collection is refused; a snapshot
 * that cannot be read, locked or written is KVI_E_IO (on open) or a logged
 * error (on close and on a periodic save), never a crash or a half-written
 * file in its place.  Format: docs/engines/local.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>

#include "kvi/kvi.h"
#include "kvitest.h"

static char g_dir[4096];
static char g_path[4200];
static char g_logged[2048];

static void on_log(void *ud, kvi_log_level level, const char *msg)
{
    (void)ud;
    if (level == KVI_LOG_ERROR)
        snprintf(g_logged, sizeof g_logged, "%s", msg);
}

/* ---- writing snapshot files by hand ---------------------------------- */

static uint32_t crc32_of(const unsigned char *p, size_t len)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int j = 0; j < 8; j++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

struct snap {
    unsigned char buf[4096];
    size_t len; /* of the records */
    uint64_t count;
};

static void add_record(struct snap *s, uint32_t klen, uint32_t vlen, int64_t expire_ms,
                       const char *bytes, size_t nbytes)
{
    unsigned char *r = s->buf + 48 + s->len;
    put32(r, klen);
    put32(r + 4, vlen);
    put64(r + 8, (uint64_t)expire_ms);
    memcpy(r + 16, bytes, nbytes);
    s->len += 16 + nbytes;
    s->count++;
}

/* Writes header + records with correct checksums to g_path. */
static void write_snap(struct snap *s)
{
    unsigned char *h = s->buf;
    memset(h, 0, 48);
    memcpy(h, "KVILOCAL", 8);
    put32(h + 8, 1);
    put64(h + 16, 1700000000000u);
    put64(h + 24, s->count);
    put64(h + 32, s->len);
    put32(h + 40, crc32_of(s->buf + 48, s->len));
    put32(h + 44, crc32_of(h, 44));
    FILE *f = fopen(g_path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(s->buf, 1, 48 + s->len, f), 48 + s->len);
    assert_int_equal(fclose(f), 0);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = malloc(8192);
    assert_non_null(b);
    *len = fread(b, 1, 8192, f);
    fclose(f);
    return b;
}

/* Opens file=g_path (with more options) and expects want, a message with
 * words in it, and the file byte for byte as it was. */
static void expect_open(const char *more, kvi_status want, const char *words)
{
    size_t before_len = 0, after_len = 0;
    char *before = read_all(g_path, &before_len);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[4400];
    snprintf(url, sizeof url, "local:s://?file=%s%s", g_path, more);
    kvi_status st = kvi_add_url(k, url);
    if (st != want || strstr(kvi_errmsg(k), words) == NULL)
        fail_msg("file=%s%s: %s '%s', want %s with '%s'", g_path, more, kvi_status_name(st),
                 kvi_errmsg(k), kvi_status_name(want), words);
    kvi_free(k);
    char *after = read_all(g_path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    free(before);
    free(after);
}

static void test_a_good_hand_made_file_loads(void **state)
{
    (void)state;
    struct snap s = {.len = 0};
    add_record(&s, 1, 2, 0, "kv1", 3);
    write_snap(&s);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[4400];
    snprintf(url, sizeof url, "local:s://?file=%s", g_path);
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    kvi_value v = {0};
    assert_int_equal(kvi_fetch(k, "local:s", "k", 1, &v), KVI_OK);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "v1", 2);
    kvi_value_free(&v);
    kvi_free(k);
}

static void test_bad_records_with_good_checksums_are_corrupt(void **state)
{
    (void)state;
    struct {
        uint32_t klen, vlen;
        int64_t expire_ms;
        const char *words;
    } cases[] = {
        {0, 1, 0, "record 1 has key length 0"},
        {2000, 1, 0, "record 1 has key length 2000"},
        {1, (512u << 20) + 1, 0, "record 1 has value length"},
        {1, 1, -5, "record 1 has a negative expiry"},
        {1, 50, 0, "record 1 runs past the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct snap s = {.len = 0};
        add_record(&s, 1, 1, 0, "ab", 2); /* record 0 is fine */
        add_record(&s, cases[i].klen, cases[i].vlen, cases[i].expire_ms, "xy", 2);
        write_snap(&s);
        expect_open("", KVI_E_CORRUPT, cases[i].words);
    }
    /* Fewer bytes left than a record's header. */
    struct snap s = {.len = 0};
    add_record(&s, 1, 1, 0, "ab", 2);
    memset(s.buf + 48 + s.len, 0, 7);
    s.len += 7;
    write_snap(&s);
    expect_open("", KVI_E_CORRUPT, "record 1 is cut short");
    /* More records than the header says. */
    s.len = 0;
    s.count = 0;
    add_record(&s, 1, 1, 0, "ab", 2);
    add_record(&s, 1, 1, 0, "cd", 2);
    s.count = 1;
    write_snap(&s);
    expect_open("", KVI_E_CORRUPT, "header says 1 records, file holds 2");
}

static void test_a_record_larger_than_the_collection_is_refused(void **state)
{
    (void)state;
    struct snap s = {.len = 0};
    char big[3000];
    memset(big, 'v', sizeof big);
    big[0] = 'k';
    add_record(&s, 1, sizeof big - 1, 0, big, sizeof big);
    write_snap(&s);
    expect_open("&max_memory=1k", KVI_E_STORE_FULL, "cannot insert record 0");
}

static void test_a_directory_is_no_snapshot(void **state)
{
    (void)state;
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[4400];
    snprintf(url, sizeof url, "local:s://?file=%s", g_dir);
    assert_int_equal(kvi_add_url(k, url), KVI_E_IO);
    assert_non_null(strstr(kvi_errmsg(k), "cannot read snapshot"));
    kvi_free(k);
}

/* file= takes at most 4000 bytes, so that NAME.lock and NAME.tmp.PID always
 * fit in PATH_MAX (the engine's own "too long" checks cannot trigger). */
static void test_a_path_too_long_for_its_lock_file_is_refused(void **state)
{
    (void)state;
    static char url[4096 + 64];
    int n = snprintf(url, sizeof url, "local:s://?file=/");
    while (n < 16 + 4093)
        url[n++] = 'p';
    url[n] = '\0';
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_status st = kvi_add_url(k, url);
    if (st != KVI_E_INVALID || strstr(kvi_errmsg(k), "a path of 1..4000 bytes") == NULL)
        fail_msg("%s: '%s'", kvi_status_name(st), kvi_errmsg(k));
    kvi_free(k);
}

static void test_an_unusable_lock_file_is_io(void **state)
{
    (void)state;
    char lock[4300];
    snprintf(lock, sizeof lock, "%s/locked.snap.lock", g_dir);
    assert_int_equal(mkdir(lock, 0700), 0);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    char url[4400];
    snprintf(url, sizeof url, "local:s://?file=%s/locked.snap", g_dir);
    assert_int_equal(kvi_add_url(k, url), KVI_E_IO);
    assert_non_null(strstr(kvi_errmsg(k), "cannot open lock file"));
    kvi_free(k);
    rmdir(lock);
}

/* Opens file=NAME in g_dir, stores, and returns the context (not freed). */
static kvi *open_and_store(const char *name, const char *more)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_set_log(k, on_log, NULL, KVI_LOG_ERROR), KVI_OK);
    char url[4400];
    snprintf(url, sizeof url, "local:w://?file=%s/%s%s", g_dir, name, more);
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    assert_int_equal(kvi_store(k, "local:w", "a", 1, "1", 1, 0), KVI_OK);
    return k;
}

static void test_a_failed_final_save_is_logged_and_leaves_no_file(void **state)
{
    (void)state;
    /* The temporary file cannot be created: a directory has its name. */
    char tmp[4400], file[4300];
    snprintf(file, sizeof file, "%s/nosave.snap", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", file, (long)getpid());
    assert_int_equal(mkdir(tmp, 0700), 0);
    kvi *k = open_and_store("nosave.snap", "");
    g_logged[0] = '\0';
    kvi_free(k);
    if (strstr(g_logged, "final save failed") == NULL || strstr(g_logged, "cannot create") == NULL)
        fail_msg("logged: '%s'", g_logged);
    assert_int_not_equal(access(file, F_OK), 0);
    rmdir(tmp);

    /* The disk is full: every write fails (the temporary file is
     * /dev/full); the link is removed, nothing is renamed into place. */
    snprintf(file, sizeof file, "%s/full.snap", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", file, (long)getpid());
    if (access("/dev/full", W_OK) != 0)
        fail_msg("/dev/full is not writable here");
    assert_int_equal(symlink("/dev/full", tmp), 0);
    k = open_and_store("full.snap", "");
    g_logged[0] = '\0';
    kvi_free(k);
    if (strstr(g_logged, "cannot write snapshot") == NULL)
        fail_msg("logged: '%s'", g_logged);
    assert_int_not_equal(access(file, F_OK), 0);
    struct stat sb;
    assert_int_not_equal(lstat(tmp, &sb), 0);
}

static void test_a_failed_periodic_save_is_logged_and_retried(void **state)
{
    (void)state;
    char tmp[4400], file[4300];
    snprintf(file, sizeof file, "%s/periodic.snap", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", file, (long)getpid());
    assert_int_equal(mkdir(tmp, 0700), 0);
    g_logged[0] = '\0';
    kvi *k = open_and_store("periodic.snap", "&save_s=1");
    for (int i = 0; i < 60 && strstr(g_logged, "periodic save failed") == NULL; i++)
        usleep(100000);
    if (strstr(g_logged, "periodic save failed") == NULL)
        fail_msg("no periodic save failure logged within 6 s: '%s'", g_logged);
    /* Once the obstacle is gone, the next period saves. */
    assert_int_equal(rmdir(tmp), 0);
    for (int i = 0; i < 60 && access(file, F_OK) != 0; i++)
        usleep(100000);
    assert_int_equal(access(file, F_OK), 0);
    kvi_free(k);
}

static void test_a_snapshot_in_the_working_directory_is_saved(void **state)
{
    (void)state;
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    assert_int_equal(kvi_add_url(k, "local:r://?file=relative.snap"), KVI_OK);
    assert_int_equal(kvi_store(k, "local:r", "a", 1, "1", 1, 0), KVI_OK);
    kvi_free(k);
    assert_int_equal(access("relative.snap", F_OK), 0);
    assert_int_equal(chdir(cwd), 0);
}

static int setup(void **state)
{
    (void)state;
    char *dir = NULL;
    if (kvi_ts_make_tempdir("snapfiles", &dir) != KVI_TS_OK)
        return -1;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    snprintf(g_path, sizeof g_path, "%s/hand.snap", dir);
    free(dir);
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
        cmocka_unit_test(test_a_good_hand_made_file_loads),
        cmocka_unit_test(test_bad_records_with_good_checksums_are_corrupt),
        cmocka_unit_test(test_a_record_larger_than_the_collection_is_refused),
        cmocka_unit_test(test_a_directory_is_no_snapshot),
        cmocka_unit_test(test_a_path_too_long_for_its_lock_file_is_refused),
        cmocka_unit_test(test_an_unusable_lock_file_is_io),
        cmocka_unit_test(test_a_failed_final_save_is_logged_and_leaves_no_file),
        cmocka_unit_test(test_a_failed_periodic_save_is_logged_and_retried),
        cmocka_unit_test(test_a_snapshot_in_the_working_directory_is_saved),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
