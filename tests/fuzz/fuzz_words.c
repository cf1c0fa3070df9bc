/*
 * fuzz_words.c -- kvi_split_words / kvi_words_free.
 *
 * Checks, besides "no crash, no leak": outputs are empty on error; each
 * word is NUL-terminated at its length; words never hold more bytes than
 * the query; and quoting every word back ("..." with \xHH escapes) and
 * splitting again gives the same words.
 */
#include <string.h>

#include "fuzz.h"
#include "kvi/engine.h"

#define MAX_INPUT 8192

static size_t quote_words(char **w, const size_t *l, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        out[o++] = '"';
        for (size_t j = 0; j < l[i]; j++) {
            unsigned char ch = (unsigned char)w[i][j];
            if (ch >= 0x21 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '\'') {
                out[o++] = (char)ch;
            } else {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[ch >> 4];
                out[o++] = hex[ch & 15];
            }
        }
        out[o++] = '"';
        out[o++] = ' ';
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char **w = (char **)&size;
    size_t *l = &size;
    size_t n = 99;
    kvi_status st = kvi_split_words(NULL, (const char *)data, size, &w, &l, &n);
    FUZZ_CHECK(st == KVI_OK || st == KVI_E_INVALID);
    if (st != KVI_OK) {
        FUZZ_CHECK(w == NULL && l == NULL && n == 0);
        return 0;
    }
    FUZZ_CHECK((n == 0) == (w == NULL));
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(w[i][l[i]] == '\0');
        total += l[i];
    }
    FUZZ_CHECK(total <= size);

    char *q = malloc(4 * total + 3 * n + 1);
    FUZZ_CHECK(q != NULL);
    size_t qlen = quote_words(w, l, n, q);
    char **w2;
    size_t *l2;
    size_t n2;
    FUZZ_CHECK(kvi_split_words(NULL, q, qlen, &w2, &l2, &n2) == KVI_OK);
    FUZZ_CHECK(n2 == n);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(l2[i] == l[i]);
        FUZZ_CHECK(memcmp(w2[i], w[i], l[i]) == 0);
    }
    kvi_words_free(w2, l2, n2);
    free(q);
    kvi_words_free(w, l, n);
    return 0;
}
