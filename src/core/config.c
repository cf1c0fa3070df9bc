/*
 * config.c -- configuration files: one URL per line.
 *
 *     # billing servers
 *     redis:billing://:secret@10.0.0.1:7001,10.0.0.2:7001/?cluster=yes
 *
 *     local:sessions://
 *
 * Blank lines and lines whose first non-blank byte is '#' are skipped,
 * blanks (space, tab) around a URL are trimmed and a CR before the LF is
 * dropped, so files written on Windows work too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* A configuration file larger than this is surely not one. */
#define CONFIG_MAX_BYTES (16u << 20)

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Finds the next line at or after *pos that is neither blank nor a
 * comment: its trimmed bytes in *start and *n, and its number in *lineno (which
 * counts every line passed over).  Returns 0 at the end of the text. */
static int next_line(const char *text, size_t len, size_t *pos, size_t *lineno, const char **start,
                     size_t *n)
{
    while (*pos < len) {
        const char *s = text + *pos;
        const char *nl = memchr(s, '\n', len - *pos);
        size_t k = nl != NULL ? (size_t)(nl - s) : len - *pos;
        *pos += k + (nl != NULL);
        (*lineno)++;
        while (k > 0 && is_blank(s[0])) {
            s++;
            k--;
        }
        while (k > 0 && is_blank(s[k - 1]))
            k--;
        if (k == 0 || s[0] == '#')
            continue;
        *start = s;
        *n = k;
        return 1;
    }
    return 0;
}

/*
 * Parses configuration text[0..len) (rules above): calls line_fn(ud, line,
 * lineno) for each URL line with the trimmed, NUL-terminated line and its
 * 1-based number, and stops at the first status other than KVI_OK, which
 * it returns.  A line holding a NUL byte is KVI_E_CORRUPT (line_fn is not
 * called for it: the NUL would silently cut the URL short).  KVI_E_INVALID
 * for NULL line_fn or NULL text with len > 0; KVI_E_NOMEM.  Allocates one
 * line buffer with malloc().  Reentrant.
 */
kvi_status kvi__config_parse(const char *text, size_t len,
                             kvi_status (*line_fn)(void *ud, const char *line, size_t lineno),
                             void *ud)
{
    if (line_fn == NULL || (text == NULL && len > 0))
        return KVI_E_INVALID;

    char *buf = NULL;
    size_t bufcap = 0;
    size_t lineno = 0;
    size_t pos = 0;
    const char *start;
    size_t n;
    kvi_status st = KVI_OK;

    while (st == KVI_OK && next_line(text, len, &pos, &lineno, &start, &n)) {
        if (memchr(start, '\0', n) != NULL) {
            st = KVI_E_CORRUPT;
            break;
        }
        if (buf == NULL || n + 1 > bufcap) {
            char *nb = realloc(buf, n + 1);
            if (nb == NULL) {
                st = KVI_E_NOMEM;
                break;
            }
            buf = nb;
            bufcap = n + 1;
        }
        memcpy(buf, start, n);
        buf[n] = '\0';
        st = line_fn(ud, buf, lineno);
    }
    if (buf != NULL) {
        /* The line may have held a password. */
        memset(buf, 0, bufcap);
        free(buf);
    }
    return st;
}

struct load {
    kvi *k;
    const char *path;
    size_t lineno;  /* of the last line handed to kvi_add_url */
    int add_failed; /* kvi_add_url failed and has set the message */
};

static kvi_status add_line(void *ud, const char *line, size_t lineno)
{
    struct load *ld = ud;
    ld->lineno = lineno;
    kvi_status st = kvi_add_url(ld->k, line);
    if (st != KVI_OK) {
        ld->add_failed = 1;
        /* Copy first: kvi_errmsg points into the buffer kvi__error writes. */
        char reason[512];
        const char *msg = kvi_errmsg(ld->k);
        snprintf(reason, sizeof reason, "%s", msg[0] != '\0' ? msg : kvi_strerror(st));
        return kvi__error(ld->k, st, "%s:%zu: %s", ld->path, lineno, reason);
    }
    return KVI_OK;
}

/* Reads the whole file into a malloc'ed buffer; errno-style failure. */
static kvi_status read_file(kvi *k, const char *path, char **out, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        return kvi__error(k, e == ENOMEM ? KVI_E_NOMEM : KVI_E_IO,
                          "cannot open config file '%s': %s", path, strerror(e));
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    kvi_status st = KVI_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= CONFIG_MAX_BYTES) {
                st = kvi__error(k, KVI_E_INVALID, "config file '%s' is larger than %u bytes", path,
                                CONFIG_MAX_BYTES);
                break;
            }
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                st = kvi__error(k, KVI_E_NOMEM, "out of memory reading config file '%s'", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                st = kvi__error(k, e == ENOMEM ? KVI_E_NOMEM : KVI_E_IO,
                                "cannot read config file '%s': %s", path, strerror(e));
            }
            break;
        }
    }
    fclose(f);
    if (st != KVI_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return KVI_OK;
}

/*
 * Reads configuration file `path` and calls kvi_add_url for each URL line
 * (see kvi.h).  Stops at the first bad line and returns its status with the
 * detail message "<path>:<line>: <reason>", where reason is the message of
 * the failed kvi_add_url (never the line itself, which may hold a
 * password); ids defined by earlier lines stay defined.  KVI_E_IO with the
 * path and the system's reason when the file cannot be read, KVI_E_CORRUPT
 * for a line holding a NUL byte, KVI_E_INVALID for NULL arguments.
 * Thread-safe as kvi_add_url is.
 */
kvi_status kvi_load_config(kvi *k, const char *path)
{
    if (k == NULL)
        return KVI_E_INVALID;
    if (path == NULL || path[0] == '\0')
        return kvi__error(k, KVI_E_INVALID, "kvi_load_config: no file name given");

    char *text = NULL;
    size_t len = 0;
    kvi_status st = read_file(k, path, &text, &len);
    if (st != KVI_OK)
        return st;

    struct load ld = {k, path, 0, 0};
    st = kvi__config_parse(text, len, add_line, &ld);
    if (st != KVI_OK && !ld.add_failed) {
        /* kvi__config_parse stopped by itself (NUL byte, no memory) at the
         * first URL line after the last one handed over. */
        size_t pos = 0, lineno = 0, n = 0;
        const char *start = NULL;
        while (next_line(text, len, &pos, &lineno, &start, &n) && lineno <= ld.lineno)
            ;
        st = kvi__error(k, st, "%s:%zu: %s", path, lineno,
                        st == KVI_E_CORRUPT ? "NUL byte in line" : kvi_strerror(st));
    }
    if (text != NULL) {
        memset(text, 0, len); /* it may hold passwords */
        free(text);
    }
    return st;
}
