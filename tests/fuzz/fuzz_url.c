/*
 * fuzz_url.c -- kvi_url_parse, kvi_url_format_redacted, kvi_url_free.
 *
 * Checks, besides "no crash, no leak": an error has a message and no URL;
 * neither the error message nor the redacted text depends on the password
 * (so neither can show it); the redacted text parses back to the same URL
 * with "***" as password; truncated formatting agrees with the full one.
 */
#include <string.h>

#include "fuzz.h"
#include "kvi/kvi.h"

#define MAX_INPUT 4096

static int same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* The password span as the parser sees it: after the first ':' of the
 * userinfo, which ends at the last '@' before the first '/' or '?' after
 * "://".  Returns 0 when the URL has none. */
static int password_span(const char *url, size_t *off, size_t *len)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL)
        return 0;
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?");
    const char *at = NULL;
    for (size_t i = alen; i > 0; i--)
        if (auth[i - 1] == '@') {
            at = auth + i - 1;
            break;
        }
    if (at == NULL)
        return 0;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon == NULL)
        return 0;
    *off = (size_t)(colon + 1 - url);
    *len = (size_t)(at - colon - 1);
    return 1;
}

/* An option whose name ends in "password" (redis: sentinel_password) is
 * shown as "***" by kvi_url_format_redacted, like the userinfo's. */
static int secret_option(const char *name)
{
    size_t n = strlen(name);
    return n >= 8 && strcmp(name + n - 8, "password") == 0;
}

/* b is a parsed back from a's redacted text: the same URL but for the
 * password and the secret options' values, which read "***". */
static void check_same_url(const kvi_url *a, const kvi_url *b)
{
    FUZZ_CHECK(same_str(a->scheme, b->scheme));
    FUZZ_CHECK(same_str(a->group, b->group));
    FUZZ_CHECK(same_str(a->id, b->id));
    FUZZ_CHECK(same_str(a->user, b->user));
    FUZZ_CHECK(a->has_password == b->has_password);
    FUZZ_CHECK(a->nhosts == b->nhosts);
    for (size_t i = 0; i < a->nhosts; i++) {
        FUZZ_CHECK(same_str(a->hosts[i].host, b->hosts[i].host));
        FUZZ_CHECK(a->hosts[i].port == b->hosts[i].port);
        FUZZ_CHECK(a->hosts[i].ipv6 == b->hosts[i].ipv6);
    }
    FUZZ_CHECK(same_str(a->database, b->database));
    FUZZ_CHECK(a->noptions == b->noptions);
    for (size_t i = 0; i < a->noptions; i++) {
        FUZZ_CHECK(same_str(a->options[i].name, b->options[i].name));
        if (secret_option(a->options[i].name))
            FUZZ_CHECK(same_str(b->options[i].value, "***"));
        else
            FUZZ_CHECK(same_str(a->options[i].value, b->options[i].value));
    }
}

static void check_parsed(const kvi_url *u)
{
    static char text[4 * MAX_INPUT + 64];
    size_t n = kvi_url_format_redacted(u, text, sizeof text);
    FUZZ_CHECK(n < sizeof text);
    FUZZ_CHECK(strlen(text) == n);
    FUZZ_CHECK(u->id != NULL && u->scheme != NULL);
    FUZZ_CHECK(u->has_password == (u->password != NULL));
    FUZZ_CHECK(u->user == NULL || u->user[0] != '\0');
    FUZZ_CHECK(u->database == NULL || u->database[0] != '\0');

    /* Truncated output is a prefix of the full one. */
    char small[16];
    FUZZ_CHECK(kvi_url_format_redacted(u, small, sizeof small) == n);
    FUZZ_CHECK(strncmp(small, text, sizeof small - 1) == 0);

    /* The text does not depend on the password. */
    if (u->has_password) {
        kvi_url other = *u;
        other.password = (char *)"another password entirely";
        static char text2[sizeof text];
        FUZZ_CHECK(kvi_url_format_redacted(&other, text2, sizeof text2) == n);
        FUZZ_CHECK(strcmp(text, text2) == 0);
    }

    /* It parses back to the same URL. */
    kvi_url *v = NULL;
    char err[256];
    kvi_status st = kvi_url_parse(text, &v, err, sizeof err);
    if (st != KVI_OK)
        fprintf(stderr, "redacted text '%s' does not parse: %s\n", text, err);
    FUZZ_CHECK(st == KVI_OK);
    check_same_url(u, v);
    if (u->has_password)
        FUZZ_CHECK(strcmp(v->password, "***") == 0);
    kvi_url_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char *url = malloc(size + 1);
    FUZZ_CHECK(url != NULL);
    memcpy(url, data, size);
    url[size] = '\0';

    char err[256];
    kvi_url *u = (kvi_url *)&err; /* must be overwritten */
    kvi_status st = kvi_url_parse(url, &u, err, sizeof err);
    FUZZ_CHECK(st == KVI_OK || st == KVI_E_BAD_URL);
    if (st == KVI_OK) {
        FUZZ_CHECK(u != NULL);
        FUZZ_CHECK(err[0] == '\0');
        check_parsed(u);
    } else {
        FUZZ_CHECK(u == NULL);
        FUZZ_CHECK(strncmp(err, "bad URL: ", 9) == 0);
    }

    /* Same URL with every password byte changed: when the change cannot
     * alter the syntax (no '%', no blanks), the outcome must be the same
     * byte for byte, so no message or text can have shown the password. */
    size_t off, len;
    if (password_span(url, &off, &len) && len > 0) {
        int plain = 1;
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)url[off + i];
            if (ch == '%' || ch <= 0x20 || ch == 0x7f)
                plain = 0;
        }
        if (plain) {
            char *url2 = malloc(size + 1);
            FUZZ_CHECK(url2 != NULL);
            memcpy(url2, url, size + 1);
            for (size_t i = 0; i < len; i++)
                url2[off + i] = url[off + i] == 'Q' ? 'Z' : 'Q';
            char err2[256];
            kvi_url *u2 = NULL;
            kvi_status st2 = kvi_url_parse(url2, &u2, err2, sizeof err2);
            FUZZ_CHECK(st2 == st);
            FUZZ_CHECK(strcmp(err, err2) == 0);
            if (st == KVI_OK) {
                FUZZ_CHECK(u2->has_password);
                static char t1[4 * MAX_INPUT + 64], t2[4 * MAX_INPUT + 64];
                kvi_url_format_redacted(u, t1, sizeof t1);
                kvi_url_format_redacted(u2, t2, sizeof t2);
                FUZZ_CHECK(strcmp(t1, t2) == 0);
            }
            kvi_url_free(u2);
            free(url2);
        }
    }
    kvi_url_free(u);
    free(url);
    return 0;
}
