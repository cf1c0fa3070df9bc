/*
 * fuzz_segment.c -- a shared collection (local://?shm=NAME) whose segment
 * image was changed by someone who may write it: the input is a list of
 * byte changes applied to a populated 1 MiB segment before it is opened.
 *
 * Input: records of 6 bytes: region (byte 0 mod 4: header, shard table,
 * buckets, arenas), a little-endian offset inside that region (bytes 1-4,
 * taken modulo its size) and a byte XORed there (byte 5).  The bytes of
 * the process-shared mutexes are left alone in the segment that is opened
 * for writing: a lock word naming another thread blocks any locker, which
 * the owner and mode checks keep other users from doing (docs/engines/
 * local.md); the read-only look (shm_readonly=yes) re-initialises its
 * copy's locks, so there every byte may change.
 *
 * Checks: opening answers OK, KVI_E_CORRUPT, KVI_E_INVALID or KVI_E_AUTH;
 * every operation then answers one of the statuses its contract allows
 * (KVI_E_CORRUPT included), never crashes and never touches memory
 * outside the mapping (ASan in the libFuzzer build); the statistics'
 * operation counts stay consistent (hits + misses + errors <= ops).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engines/local/shm_internal.h"
#include "fuzz.h"
#include "kvi/kvi.h"

#define SEG_BYTES (1u << 20)
#define NKEYS 64

static char name[64], shm[80], url[160], url_ro[200];
static unsigned char *image; /* the populated segment as made */

static void make_image(void)
{
    snprintf(name, sizeof name, "kvi-fuzz-seg-%ld", (long)getpid());
    snprintf(shm, sizeof shm, "/kvi.%s", name);
    snprintf(url, sizeof url, "local://?shm=%s&max_memory=1m&evict=lru", name);
    snprintf(url_ro, sizeof url_ro, "local://?shm=%s&shm_readonly=yes", name);
    shm_unlink(shm);
    kvi *k = NULL;
    FUZZ_CHECK(kvi_new(&k) == KVI_OK);
    FUZZ_CHECK(kvi_add_url(k, url) == KVI_OK);
    for (int i = 0; i < NKEYS; i++) {
        char key[16], val[40];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "%d", i * 7);
        FUZZ_CHECK(kvi_store(k, "local", key, strlen(key), val, strlen(val), i % 3 ? 0 : 1000) ==
                   KVI_OK);
    }
    kvi_free(k);
    int fd = shm_open(shm, O_RDWR, 0);
    FUZZ_CHECK(fd >= 0);
    image = malloc(SEG_BYTES);
    FUZZ_CHECK(image != NULL && pread(fd, image, SEG_BYTES, 0) == (ssize_t)SEG_BYTES);
    close(fd);
}

/* Is off inside one of the segment's process-shared mutexes? */
static int in_mutex(const struct sh_header *h, uint64_t off)
{
    uint64_t reg = offsetof(struct sh_header, reg_lock);
    if (off >= reg && off < reg + sizeof(pthread_mutex_t))
        return 1;
    if (off < h->shards_off || off >= h->shards_off + SH_SHARDS * sizeof(struct sh_shard))
        return 0;
    uint64_t in = (off - h->shards_off) % sizeof(struct sh_shard);
    return in < sizeof(pthread_mutex_t); /* lock is the first field */
}

/* Writes the image changed by the input into the segment; readonly: the
 * mutexes may change too. */
static void plant(const uint8_t *data, size_t size, int readonly)
{
    unsigned char *img = malloc(SEG_BYTES);
    FUZZ_CHECK(img != NULL);
    memcpy(img, image, SEG_BYTES);
    const struct sh_header *h = (const struct sh_header *)image;
    const struct sh_shard *sh0 = (const struct sh_shard *)(image + h->shards_off);
    uint64_t start[4] = {0, h->shards_off, sh0->buckets_off, sh0->arena_off};
    uint64_t end[4] = {h->shards_off, sh0->buckets_off, sh0->arena_off, SEG_BYTES};
    for (size_t i = 0; i + 6 <= size; i += 6) {
        unsigned r = data[i] % 4u;
        uint32_t o = (uint32_t)data[i + 1] | (uint32_t)data[i + 2] << 8 |
                     (uint32_t)data[i + 3] << 16 | (uint32_t)data[i + 4] << 24;
        uint64_t off = start[r] + o % (end[r] - start[r]);
        if (!readonly && in_mutex(h, off))
            continue;
        img[off] ^= data[i + 5];
    }
    int fd = shm_open(shm, O_RDWR | O_CREAT, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(ftruncate(fd, SEG_BYTES) == 0);
    FUZZ_CHECK(pwrite(fd, img, SEG_BYTES, 0) == (ssize_t)SEG_BYTES);
    close(fd);
    free(img);
}

static int allowed(kvi_status st)
{
    return st == KVI_OK || st == KVI_NOT_FOUND || st == KVI_E_CORRUPT || st == KVI_E_STORE_FULL ||
           st == KVI_E_NOT_A_COUNTER || st == KVI_E_OVERFLOW || st == KVI_E_UNSUPPORTED;
}

static void exercise(const char *u)
{
    kvi *k = NULL;
    FUZZ_CHECK(kvi_new(&k) == KVI_OK);
    kvi_status st = kvi_add_url(k, u);
    FUZZ_CHECK(st == KVI_OK || st == KVI_E_CORRUPT || st == KVI_E_INVALID || st == KVI_E_AUTH);
    if (st == KVI_OK) {
        for (int i = 0; i < NKEYS; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", i);
            kvi_value v = KVI_VALUE_INIT;
            FUZZ_CHECK(allowed(kvi_fetch(k, "local", key, strlen(key), &v)));
            kvi_value_free(&v);
            int64_t n = 0;
            if (i % 8 == 0)
                FUZZ_CHECK(allowed(kvi_add(k, "local", key, strlen(key), 1, 0, &n)));
            if (i % 8 == 1)
                FUZZ_CHECK(allowed(kvi_store(k, "local", key, strlen(key), "x", 1, 0)));
            if (i % 8 == 2)
                FUZZ_CHECK(allowed(kvi_remove(k, "local", key, strlen(key))));
            int64_t ttl = 0;
            FUZZ_CHECK(allowed(kvi_ttl(k, "local", key, strlen(key), &ttl)));
        }
        kvi_reply *r = NULL;
        FUZZ_CHECK(allowed(kvi_keys(k, "local", "*", 1, &r)));
        kvi_reply_free(r);
        uint64_t removed = 0;
        FUZZ_CHECK(allowed(kvi_remove_chunk(k, "local", "k1*", 3, &removed)));
        kvi_stats s;
        FUZZ_CHECK(kvi_stats_get(k, "local", &s) == KVI_OK);
        /* The operation counts (per shard and in the header) are clamped
         * to what can be true, whatever the segment holds. */
        FUZZ_CHECK(s.shared == 1 && s.hits <= s.ops && s.misses <= s.ops - s.hits &&
                   s.errors <= s.ops - s.hits - s.misses);
    }
    kvi_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (image == NULL)
        make_image();
    if (size > 6 * 256)
        return 0;
    plant(data, size, 1);
    exercise(url_ro);
    plant(data, size, 0);
    exercise(url);
    shm_unlink(shm);
    return 0;
}
