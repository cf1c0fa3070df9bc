/*
 * snapshot.c -- persistence of a local table in one file (format version 1,
 * all integers little-endian):
 *
 *   offset  size  field
 *   0       8     magic "KVILOCAL"
 *   8       4     format version (1)
 *   12      4     flags (0)
 *   16      8     saved_at: unix ms when written (int64)
 *   24      8     number of records
 *   32      8     length of the records area in bytes
 *   40      4     CRC-32 (IEEE) of the records area
 *   44      4     CRC-32 of bytes 0..43
 *   48      ...   records, each: key_len u32 (1..1024), val_len u32,
 *                 expire_ms int64 (absolute unix ms, 0 = none), key, value
 *
 * A file is written whole to PATH.tmp.PID, fsync'ed, renamed over PATH and
 * the directory fsync'ed, so a crash leaves either the old or the new
 * snapshot.  A reader checks everything before it inserts anything.
 */
#include "engines/local/local.h"
#include "engines/local/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAGIC "KVILOCAL"
#define SNAP_VERSION 1u
#define SNAP_HEADER 48u
#define SNAP_RECORD 16u
#define SNAP_BUF (64u * 1024u)

/* ---- CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) --------------------- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++)
            crc_table[s][i] =
                (crc_table[s - 1][i] >> 8) ^ crc_table[0][crc_table[s - 1][i] & 0xFFu];
}

/* Continues a CRC-32 over more bytes (start with crc 0); slicing by 8. */
static uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xFFu] ^ crc_table[6][(lo >> 8) & 0xFFu] ^
              crc_table[5][(lo >> 16) & 0xFFu] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFFu];
    return ~crc;
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

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- reading -------------------------------------------------------------- */

static kvi_status corrupt(uint64_t *bad_offset, char *why, size_t why_len, uint64_t off,
                          const char *fmt, ...) KVI_PRINTF(5, 6);

static kvi_status corrupt(uint64_t *bad_offset, char *why, size_t why_len, uint64_t off,
                          const char *fmt, ...)
{
    *bad_offset = off;
    if (why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return KVI_E_CORRUPT;
}

/* Walks the records; inserts them into t when t is not NULL. */
static kvi_status walk_records(const kvi__tab *t, const unsigned char *p, size_t len,
                               uint64_t count, uint64_t *bad_offset, char *why, size_t why_len)
{
    size_t off = SNAP_HEADER;
    uint64_t n = 0;
    while (off < len) {
        if (len - off < SNAP_RECORD)
            return corrupt(bad_offset, why, why_len, off, "record %llu is cut short",
                           (unsigned long long)n);
        uint32_t klen = get32(p + off);
        uint32_t vlen = get32(p + off + 4);
        int64_t expire_ms = (int64_t)get64(p + off + 8);
        if (klen == 0 || klen > KVI_MAX_KEY_LEN)
            return corrupt(bad_offset, why, why_len, off, "record %llu has key length %u",
                           (unsigned long long)n, klen);
        if (vlen > KVI_MAX_VALUE_LEN)
            return corrupt(bad_offset, why, why_len, off + 4, "record %llu has value length %u",
                           (unsigned long long)n, vlen);
        if (expire_ms < 0)
            return corrupt(bad_offset, why, why_len, off + 8, "record %llu has a negative expiry",
                           (unsigned long long)n);
        if (len - off - SNAP_RECORD < (size_t)klen + vlen)
            return corrupt(bad_offset, why, why_len, off, "record %llu runs past the end",
                           (unsigned long long)n);
        if (t) {
            const unsigned char *key = p + off + SNAP_RECORD;
            kvi_status st = t->ops->put_abs(t->self, key, klen, key + klen, vlen, expire_ms);
            if (st != KVI_OK) {
                *bad_offset = off;
                snprintf(why, why_len, "cannot insert record %llu: %s", (unsigned long long)n,
                         kvi_strerror(st));
                return st;
            }
        }
        off += SNAP_RECORD + (size_t)klen + vlen;
        n++;
    }
    if (n != count)
        return corrupt(bad_offset, why, why_len, 24, "header says %llu records, file holds %llu",
                       (unsigned long long)count, (unsigned long long)n);
    return KVI_OK;
}

static kvi_status snapshot_load(const kvi__tab *t, const void *buf, size_t len,
                                uint64_t *bad_offset, char *why, size_t why_len)
{
    const unsigned char *p = buf;
    pthread_once(&crc_once, crc_init);
    *bad_offset = 0;
    if (why_len)
        why[0] = '\0';
    if (len < 8 || memcmp(p, SNAP_MAGIC, 8) != 0)
        return corrupt(bad_offset, why, why_len, 0, "not a kvi local snapshot (bad magic)");
    if (len < SNAP_HEADER)
        return corrupt(bad_offset, why, why_len, len, "truncated header (%zu of %u bytes)", len,
                       SNAP_HEADER);
    if (crc32_update(0, p, 44) != get32(p + 44))
        return corrupt(bad_offset, why, why_len, 44, "header checksum mismatch");
    uint32_t version = get32(p + 8);
    if (version != SNAP_VERSION)
        return corrupt(bad_offset, why, why_len, 8,
                       "format version %u is not supported (this build reads version %u)", version,
                       SNAP_VERSION);
    uint64_t count = get64(p + 24);
    uint64_t rec_len = get64(p + 32);
    if (rec_len > len - SNAP_HEADER)
        return corrupt(bad_offset, why, why_len, len,
                       "truncated: the records need %llu bytes, the file has %zu",
                       (unsigned long long)rec_len, len - SNAP_HEADER);
    if (rec_len < len - SNAP_HEADER)
        return corrupt(bad_offset, why, why_len, SNAP_HEADER + rec_len,
                       "%llu unexpected bytes after the records",
                       (unsigned long long)(len - SNAP_HEADER - rec_len));
    if (crc32_update(0, p + SNAP_HEADER, (size_t)rec_len) != get32(p + 40))
        return corrupt(bad_offset, why, why_len, SNAP_HEADER, "records checksum mismatch");
    /* Check the structure completely before the first insert, so that a bad
     * file changes nothing. */
    kvi_status st = walk_records(NULL, p, len, count, bad_offset, why, why_len);
    if (st != KVI_OK)
        return st;
    return walk_records(t, p, len, count, bad_offset, why, why_len);
}

static void errno_text(int err, char *buf, size_t len)
{
    /* GNU strerror_r may return a static string instead of filling buf. */
    const char *s = strerror_r(err, buf, len);
    if (s != buf)
        snprintf(buf, len, "%s", s);
}

kvi_status kvi__local_snapshot_load(kvi__lt *t, const void *buf, size_t len, uint64_t *bad_offset,
                                    char *why, size_t why_len)
{
    kvi__tab tab = {&kvi__lt_ops, t};
    return snapshot_load(&tab, buf, len, bad_offset, why, why_len);
}

kvi_status kvi__local_snapshot_read(kvi__lt *t, kvi *k, const char *path, int *missing, char *err,
                                    size_t err_len)
{
    kvi__tab tab = {&kvi__lt_ops, t};
    return kvi__local_snapshot_read_tab(tab, k, path, missing, err, err_len);
}

kvi_status kvi__local_snapshot_read_tab(kvi__tab t, kvi *k, const char *path, int *missing,
                                        char *err, size_t err_len)
{
    char etext[128];
    *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            *missing = 1;
            return KVI_OK;
        }
        errno_text(errno, etext, sizeof(etext));
        snprintf(err, err_len, "cannot open snapshot %s: %s", path, etext);
        return KVI_E_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 0 || (uint64_t)sb.st_size > SIZE_MAX / 2) {
        errno_text(errno, etext, sizeof(etext));
        snprintf(err, err_len, "cannot read snapshot %s: %s", path, etext);
        close(fd);
        return KVI_E_IO;
    }
    size_t len = (size_t)sb.st_size;
    unsigned char *buf = kvi__malloc(k, len ? len : 1);
    if (!buf) {
        close(fd);
        snprintf(err, err_len, "no memory to read snapshot %s (%zu bytes)", path, len);
        return KVI_E_NOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int read_errno = errno;
    close(fd);
    if (got < len) {
        errno_text(read_errno, etext, sizeof(etext));
        snprintf(err, err_len, "cannot read snapshot %s: %s", path, etext);
        kvi__free(k, buf);
        return KVI_E_IO;
    }
    uint64_t bad = 0;
    char why[200];
    kvi_status st = snapshot_load(&t, buf, len, &bad, why, sizeof(why));
    kvi__free(k, buf);
    if (st != KVI_OK)
        snprintf(err, err_len, "snapshot %s: %s at byte offset %llu", path, why,
                 (unsigned long long)bad);
    return st;
}

/* ---- writing -------------------------------------------------------------- */

struct writer {
    int fd;
    int err; /* errno of the first failure */
    uint32_t crc;
    uint64_t count;
    uint64_t rec_len;
    size_t used;
    unsigned char buf[SNAP_BUF];
};

static void w_flush(struct writer *w)
{
    size_t off = 0;
    while (!w->err && off < w->used) {
        ssize_t r = write(w->fd, w->buf + off, w->used - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            w->err = errno;
        else
            off += (size_t)r;
    }
    w->used = 0;
}

static void w_put(struct writer *w, const void *data, size_t len)
{
    const unsigned char *p = data;
    w->crc = crc32_update(w->crc, p, len);
    w->rec_len += len;
    while (len) {
        if (w->used == SNAP_BUF)
            w_flush(w);
        size_t n = SNAP_BUF - w->used < len ? SNAP_BUF - w->used : len;
        memcpy(w->buf + w->used, p, n);
        w->used += n;
        p += n;
        len -= n;
    }
}

static kvi_status w_record(void *ud, const void *key, size_t key_len, const void *val,
                           size_t val_len, int64_t expire_ms)
{
    struct writer *w = ud;
    unsigned char h[SNAP_RECORD];
    put32(h, (uint32_t)key_len);
    put32(h + 4, (uint32_t)val_len);
    put64(h + 8, (uint64_t)expire_ms);
    w_put(w, h, sizeof(h));
    w_put(w, key, key_len);
    w_put(w, val, val_len);
    w->count++;
    return w->err ? KVI_E_IO : KVI_OK;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

kvi_status kvi__local_snapshot_save(kvi__lt *t, kvi *k, const char *path, char *err, size_t err_len)
{
    kvi__tab tab = {&kvi__lt_ops, t};
    return kvi__local_snapshot_save_tab(tab, k, path, err, err_len);
}

kvi_status kvi__local_snapshot_save_tab(kvi__tab t, kvi *k, const char *path, char *err,
                                        size_t err_len)
{
    char tmp[PATH_MAX], etext[128];
    pthread_once(&crc_once, crc_init);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        snprintf(err, err_len, "snapshot path %s is too long", path);
        return KVI_E_INVALID;
    }
    struct writer *w = kvi__malloc(k, sizeof(*w));
    if (!w) {
        snprintf(err, err_len, "no memory to write snapshot %s", path);
        return KVI_E_NOMEM;
    }
    memset(w, 0, offsetof(struct writer, buf));
    w->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        errno_text(errno, etext, sizeof(etext));
        snprintf(err, err_len, "cannot create %s: %s", tmp, etext);
        kvi__free(k, w);
        return KVI_E_IO;
    }
    unsigned char header[SNAP_HEADER];
    memset(header, 0, sizeof(header));
    if (write(w->fd, header, sizeof(header)) != (ssize_t)sizeof(header))
        w->err = errno ? errno : EIO;
    if (!w->err)
        (void)t.ops->foreach (t.self, "*", 1, w_record, w);
    w_flush(w);
    if (!w->err) {
        memcpy(header, SNAP_MAGIC, 8);
        put32(header + 8, SNAP_VERSION);
        put32(header + 12, 0);
        put64(header + 16, (uint64_t)kvi_now_ms(k));
        put64(header + 24, w->count);
        put64(header + 32, w->rec_len);
        put32(header + 40, w->crc);
        put32(header + 44, crc32_update(0, header, 44));
        if (pwrite(w->fd, header, sizeof(header), 0) != (ssize_t)sizeof(header))
            w->err = errno ? errno : EIO;
    }
    if (!w->err && fsync(w->fd) != 0)
        w->err = errno;
    if (close(w->fd) != 0 && !w->err)
        w->err = errno;
    if (!w->err && rename(tmp, path) != 0)
        w->err = errno;
    int failed = w->err;
    kvi__free(k, w);
    if (failed) {
        unlink(tmp);
        errno_text(failed, etext, sizeof(etext));
        snprintf(err, err_len, "cannot write snapshot %s: %s", path, etext);
        return KVI_E_IO;
    }
    if (fsync_dir_of(path) != 0) {
        errno_text(errno, etext, sizeof(etext));
        snprintf(err, err_len, "snapshot %s written but its directory not synced: %s", path, etext);
        return KVI_E_IO;
    }
    return KVI_OK;
}

int kvi__local_snapshot_lock(const char *path, char *err, size_t err_len)
{
    char lock[PATH_MAX], etext[128];
    if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock)) {
        snprintf(err, err_len, "snapshot path %s is too long", path);
        return -1;
    }
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        errno_text(errno, etext, sizeof(etext));
        snprintf(err, err_len, "cannot open lock file %s: %s", lock, etext);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) {
            snprintf(err, err_len,
                     "snapshot %s is in use by another connection or process (lock %s held)", path,
                     lock);
            return -2;
        }
        errno_text(e, etext, sizeof(etext));
        snprintf(err, err_len, "cannot lock %s: %s", lock, etext);
        return -1;
    }
    return fd;
}
