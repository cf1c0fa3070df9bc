/*
 * test_local_snapshot.c -- persistence of the local engine (file=): round
 * trip with remaining TTLs, the lock against a second writer (in this
 * process and in another), refusal of truncated, corrupt and newer-format
 * files with the file name and byte offset, on_corrupt=empty, periodic
 * saves, and a mutation run over the loader.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testclock.h"

#include "engines/local/local.h"
#include "kvi/kvi.h"

static kvi_test_clock fake;

struct fixture {
    char dir[256];
    char path[300];
    char url[400];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/kvi-snap-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/store.kvis", f->dir);
    snprintf(f->url, sizeof(f->url), "local:p://?file=%s", f->path);
    kvi_test_clock_set(&fake, INT64_C(1700000000000));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static kvi *ctx(void)
{
    kvi *k = NULL;
    assert_int_equal(kvi_new(&k), KVI_OK);
    kvi_set_clock(k, kvi_test_clock_fn, &fake);
    return k;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const unsigned char *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    fclose(fp);
}

/* A snapshot with a few entries of every kind, written by a closed context. */
static void write_sample(struct fixture *f)
{
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, f->url), KVI_OK);
    const char bin[] = {'\0', '\xff', '\n', ' '};
    assert_int_equal(kvi_store(k, "local:p", bin, sizeof(bin), bin, sizeof(bin), 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local:p", "empty", 5, "", 0, 0), KVI_OK);
    assert_int_equal(kvi_store(k, "local:p", "short", 5, "s", 1, 10), KVI_OK);
    assert_int_equal(kvi_store(k, "local:p", "long", 4, "l", 1, 100), KVI_OK);
    assert_int_equal(kvi_add(k, "local:p", "ctr", 3, -42, 0, NULL), KVI_OK);
    kvi_free(k);
}

static void test_snapshot_round_trip_keeps_bytes_and_remaining_ttl(void **state)
{
    struct fixture *f = *state;
    write_sample(f);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    kvi_test_clock_advance(&fake, 30000); /* 30 s later: "short" is gone */
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, f->url), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    const char bin[] = {'\0', '\xff', '\n', ' '};
    assert_int_equal(kvi_fetch(k, "local:p", bin, sizeof(bin), &v), KVI_OK);
    assert_int_equal(v.len, sizeof(bin));
    assert_memory_equal(v.data, bin, sizeof(bin));
    kvi_value_free(&v);
    assert_int_equal(kvi_fetch(k, "local:p", "empty", 5, &v), KVI_OK);
    assert_int_equal(v.len, 0);
    kvi_value_free(&v);
    assert_int_equal(kvi_fetch(k, "local:p", "short", 5, &v), KVI_NOT_FOUND);
    int64_t ttl = 0, n = 0;
    assert_int_equal(kvi_ttl(k, "local:p", "long", 4, &ttl), KVI_OK);
    assert_int_equal(ttl, 70);
    assert_int_equal(kvi_counter_fetch(k, "local:p", "ctr", 3, &n), KVI_OK);
    assert_int_equal(n, -42);
    kvi_stats s;
    assert_int_equal(kvi_stats_get(k, "local:p", &s), KVI_OK);
    assert_int_equal(s.entries, 4);
    kvi_free(k);
}

/* Only a collection with a snapshot file claims to persist. */
static void test_persistent_cap_only_with_file(void **state)
{
    struct fixture *f = *state;
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, f->url), KVI_OK);
    kvi_conn *with = NULL, *without = NULL;
    assert_int_equal(kvi_conn_get(k, "local:p", &with), KVI_OK);
    assert_int_equal(kvi_conn_get(k, "local", &without), KVI_OK);
    assert_true(kvi_conn_caps(with) & KVI_CAP_PERSISTENT);
    assert_false(kvi_conn_caps(without) & KVI_CAP_PERSISTENT);
    assert_true(kvi_conn_caps(with) & KVI_CAP_ITERATE);
    kvi_free(k);
}

static void test_second_writer_gets_locked_in_process_and_across_processes(void **state)
{
    struct fixture *f = *state;
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, f->url), KVI_OK);

    kvi *k2 = ctx();
    assert_int_equal(kvi_add_url(k2, f->url), KVI_E_LOCKED);
    assert_non_null(strstr(kvi_errmsg(k2), f->path));
    kvi_free(k2);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kvi *kc = NULL;
        if (kvi_new(&kc) != KVI_OK)
            _exit(100);
        kvi_status st = kvi_add_url(kc, f->url);
        _exit(st == KVI_E_LOCKED ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* Once the first one closed, the file can be opened again. */
    kvi_free(k);
    k2 = ctx();
    assert_int_equal(kvi_add_url(k2, f->url), KVI_OK);
    kvi_free(k2);
}

/* Opens f->url expecting KVI_E_CORRUPT whose message names the file and
 * the given offset text. */
static void expect_corrupt(struct fixture *f, const char *offset_text, const char *reason)
{
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, f->url), KVI_E_CORRUPT);
    const char *msg = kvi_errmsg(k);
    assert_non_null(strstr(msg, f->path));
    assert_non_null(strstr(msg, offset_text));
    assert_non_null(strstr(msg, reason));
    /* Nothing was defined. */
    kvi_conn *c = NULL;
    assert_int_equal(kvi_conn_get(k, "local:p", &c), KVI_E_UNKNOWN_ENGINE);
    kvi_free(k);
}

static void test_truncated_file_is_refused_with_offset(void **state)
{
    struct fixture *f = *state;
    write_sample(f);
    size_t len = 0;
    unsigned char *buf = slurp(f->path, &len);
    spit(f->path, buf, len - 3);
    char off[64];
    snprintf(off, sizeof(off), "byte offset %zu", len - 3);
    expect_corrupt(f, off, "truncated");
    spit(f->path, buf, 20);
    expect_corrupt(f, "byte offset 20", "truncated header");
    free(buf);
    /* The refused file was left alone. */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_size, 20);
}

static void test_flipped_byte_is_refused_by_checksum(void **state)
{
    struct fixture *f = *state;
    write_sample(f);
    size_t len = 0;
    unsigned char *buf = slurp(f->path, &len);
    buf[len - 1] ^= 0x01;
    spit(f->path, buf, len);
    expect_corrupt(f, "byte offset 48", "checksum");
    buf[len - 1] ^= 0x01;
    buf[30] ^= 0x80; /* inside the header */
    spit(f->path, buf, len);
    expect_corrupt(f, "byte offset 44", "header checksum");
    free(buf);
}

static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int j = 0; j < 8; j++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

static void test_newer_format_version_is_refused(void **state)
{
    struct fixture *f = *state;
    write_sample(f);
    size_t len = 0;
    unsigned char *buf = slurp(f->path, &len);
    /* The CRC in the file is the standard CRC-32 of the header. */
    uint32_t stored = (uint32_t)buf[44] | (uint32_t)buf[45] << 8 | (uint32_t)buf[46] << 16 |
                      (uint32_t)buf[47] << 24;
    assert_int_equal(stored, crc32_ref(buf, 44));
    buf[8] = 2;
    uint32_t crc = crc32_ref(buf, 44);
    for (int i = 0; i < 4; i++)
        buf[44 + i] = (unsigned char)(crc >> (8 * i));
    spit(f->path, buf, len);
    expect_corrupt(f, "byte offset 8", "format version 2");
    free(buf);
}

static void test_on_corrupt_empty_starts_empty_and_keeps_the_bad_file(void **state)
{
    struct fixture *f = *state;
    spit(f->path, (const unsigned char *)"garbage, not a snapshot", 23);
    char url[500];
    snprintf(url, sizeof(url), "%s&on_corrupt=empty", f->url);
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    kvi_stats s;
    assert_int_equal(kvi_stats_get(k, "local:p", &s), KVI_OK);
    assert_int_equal(s.entries, 0);
    assert_int_equal(kvi_store(k, "local:p", "a", 1, "1", 1, 0), KVI_OK);
    kvi_free(k);
    char aside[400];
    snprintf(aside, sizeof(aside), "%s.corrupt", f->path);
    size_t len = 0;
    unsigned char *buf = slurp(aside, &len);
    assert_int_equal(len, 23);
    free(buf);
    /* The new file is valid. */
    k = ctx();
    assert_int_equal(kvi_add_url(k, f->url), KVI_OK);
    assert_int_equal(kvi_stats_get(k, "local:p", &s), KVI_OK);
    assert_int_equal(s.entries, 1);
    kvi_free(k);
}

static void test_bad_persistence_options_are_rejected(void **state)
{
    struct fixture *f = *state;
    kvi *k = ctx();
    char url[500];
    snprintf(url, sizeof(url), "%s&save_s=soon", f->url);
    assert_int_equal(kvi_add_url(k, url), KVI_E_INVALID);
    assert_non_null(strstr(kvi_errmsg(k), "save_s"));
    assert_int_equal(kvi_add_url(k, "local:q://?save_s=5"), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "local:q://?file="), KVI_E_INVALID);
    snprintf(url, sizeof(url), "%s&on_corrupt=ignore", f->url);
    assert_int_equal(kvi_add_url(k, url), KVI_E_INVALID);
    assert_int_equal(kvi_add_url(k, "local:q://?file=/nonexistent-dir/x/y.kvis"), KVI_E_IO);
    kvi_free(k);
}

static void test_periodic_save_writes_while_open(void **state)
{
    struct fixture *f = *state;
    char url[500];
    snprintf(url, sizeof(url), "%s&save_s=1", f->url);
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    assert_int_equal(kvi_store(k, "local:p", "kept", 4, "yes", 3, 0), KVI_OK);
    struct stat sb;
    int seen = 0;
    for (int i = 0; i < 40 && !seen; i++) {
        usleep(100000);
        seen = stat(f->path, &sb) == 0;
    }
    assert_true(seen);
    /* Read it with the loader while the writer still holds the lock. */
    kvi *k2 = ctx();
    kvi__lt_config cfg = {0, KVI__LT_EVICT_NONE};
    kvi__lt *t = NULL;
    assert_int_equal(kvi__lt_new(k2, &cfg, &t), KVI_OK);
    int missing = 1;
    char err[512];
    assert_int_equal(kvi__local_snapshot_read(t, k2, f->path, &missing, err, sizeof(err)), KVI_OK);
    assert_false(missing);
    kvi__lt_stats s;
    kvi__lt_stats_get(t, &s);
    assert_int_equal(s.entries, 1);
    kvi__lt_free(t);
    kvi_free(k2);
    kvi_free(k);
}

static void test_forked_child_neither_hangs_nor_saves(void **state)
{
    struct fixture *f = *state;
    char url[500];
    snprintf(url, sizeof(url), "%s&save_s=100", f->url);
    kvi *k = ctx();
    assert_int_equal(kvi_add_url(k, url), KVI_OK);
    assert_int_equal(kvi_store(k, "local:p", "parent", 6, "1", 1, 0), KVI_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10); /* a hang in kvi_free fails the test instead of blocking it */
        kvi_store(k, "local:p", "child", 5, "1", 1, 0);
        kvi_free(k);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), -1); /* the child wrote no snapshot */
    kvi_free(k);
    k = ctx();
    assert_int_equal(kvi_add_url(k, f->url), KVI_OK);
    kvi_value v = KVI_VALUE_INIT;
    assert_int_equal(kvi_fetch(k, "local:p", "parent", 6, &v), KVI_OK);
    kvi_value_free(&v);
    assert_int_equal(kvi_fetch(k, "local:p", "child", 5, &v), KVI_NOT_FOUND);
    kvi_free(k);
}

static void test_loader_survives_random_mutations(void **state)
{
    struct fixture *f = *state;
    write_sample(f);
    size_t len = 0;
    unsigned char *orig = slurp(f->path, &len);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    kvi *k = ctx();
    kvi__lt_config cfg = {0, KVI__LT_EVICT_NONE};
    srand(12345);
    unsigned ok = 0, corrupt = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, orig, len);
        size_t n = (size_t)rand() % len + 1;
        int flips = 1 + rand() % 4;
        for (int i = 0; i < flips; i++)
            buf[(size_t)rand() % len] = (unsigned char)rand();
        kvi__lt *t = NULL;
        assert_int_equal(kvi__lt_new(k, &cfg, &t), KVI_OK);
        uint64_t off = 0;
        char why[200];
        kvi_status st = kvi__local_snapshot_load(t, buf, n, &off, why, sizeof(why));
        kvi__lt_stats s;
        kvi__lt_stats_get(t, &s);
        if (st == KVI_OK) {
            ok++;
        } else {
            assert_int_equal(st, KVI_E_CORRUPT);
            assert_true(off <= n);
            assert_int_equal(s.entries, 0); /* a bad image inserts nothing */
            corrupt++;
        }
        kvi__lt_free(t);
    }
    assert_true(corrupt > 2900);
    kvi_free(k);
    free(buf);
    free(orig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_persistent_cap_only_with_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_round_trip_keeps_bytes_and_remaining_ttl,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_second_writer_gets_locked_in_process_and_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_file_is_refused_with_offset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_is_refused_by_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_format_version_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_corrupt_empty_starts_empty_and_keeps_the_bad_file,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_persistence_options_are_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_save_writes_while_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forked_child_neither_hangs_nor_saves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loader_survives_random_mutations, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
