/*
 * words.c -- the raw-query tokenizer of line-based engines, with the
 * quoting rules of redis-cli:
 *
 *   SET k "a b"        -> SET, k, a b
 *   SET k 'it\'s'      -> SET, k, it's
 *   SET k "\x00\n"     -> SET, k, NUL + newline (2 bytes)
 *   SET k pre"fix x"   -> SET, k, prefix x      (a quote may start mid-word)
 *   SET k "a"b         -> KVI_E_INVALID          (a closing quote must end the word)
 *
 * Words are separated by blanks (space, \t, \n, \r, \v, \f).  Outside
 * quotes every other byte, '\' and NUL included, is taken literally.
 * Inside "double quotes": \n \r \t \a \b \\ \" and \xHH (two hex digits)
 * are escapes, '\' before any other byte gives that byte.  Inside 'single
 * quotes' only \' is an escape; everything else is literal.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static int is_blank(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* See core/internal.h. */
int kvi__hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

struct wordlist {
    char **words;
    size_t *lens;
    size_t count;
    size_t cap;
};

static int push_word(struct wordlist *wl, const char *bytes, size_t len)
{
    if (wl->count == wl->cap) {
        if (wl->cap > SIZE_MAX / 2 / sizeof(char *))
            return -1;
        size_t ncap = wl->cap == 0 ? 8 : wl->cap * 2;
        char **nw = realloc(wl->words, ncap * sizeof *nw);
        if (nw == NULL)
            return -1;
        wl->words = nw;
        size_t *nl = realloc(wl->lens, ncap * sizeof *nl);
        if (nl == NULL)
            return -1;
        wl->lens = nl;
        wl->cap = ncap;
    }
    char *w = malloc(len + 1);
    if (w == NULL)
        return -1;
    if (len > 0)
        memcpy(w, bytes, len);
    w[len] = '\0';
    wl->words[wl->count] = w;
    wl->lens[wl->count] = len;
    wl->count++;
    return 0;
}

/* What went wrong: each is its own literal format, so that its words are
 * never taken for the password (only arguments are masked). */
enum syntax_fault { UNTERMINATED_DOUBLE, UNTERMINATED_SINGLE, QUOTE_NOT_ENDING_WORD };

static kvi_status syntax_error(kvi_conn *c, enum syntax_fault what, size_t word, size_t offset)
{
    /* The query itself is never quoted back: it may be "AUTH <password>". */
    if (c == NULL)
        return KVI_E_INVALID;
    switch (what) {
    case UNTERMINATED_DOUBLE:
        return kvi_engine_error(c, KVI_E_INVALID,
                                "raw query: unterminated double quote (word %zu, byte offset %zu)",
                                word, offset);
    case UNTERMINATED_SINGLE:
        return kvi_engine_error(c, KVI_E_INVALID,
                                "raw query: unterminated single quote (word %zu, byte offset %zu)",
                                word, offset);
    default:
        return kvi_engine_error(c, KVI_E_INVALID,
                                "raw query: closing quote must be followed by a blank (word %zu, "
                                "byte offset %zu)",
                                word, offset);
    }
}

/*
 * Splits query[0..query_len) into words (rules above).  On KVI_OK,
 * *words and *lens are malloc'ed arrays of *count entries (both NULL when
 * the query holds no word); each word is malloc'ed, NUL-terminated and
 * may hold NUL bytes, its true length being (*lens)[i].  Release all with
 * kvi_words_free(*words, *lens, *count).  On error the outputs are NULL/0:
 * KVI_E_INVALID for NULL outputs, a NULL query with non-zero length, an
 * unterminated quote or a closing quote followed by something other than
 * a blank (with a detail message through kvi_engine_error when c is not
 * NULL; the message never quotes the query), KVI_E_NOMEM.  Thread-safe.
 */
kvi_status kvi_split_words(kvi_conn *c, const char *query, size_t query_len, char ***words,
                           size_t **lens, size_t *count)
{
    if (words != NULL)
        *words = NULL;
    if (lens != NULL)
        *lens = NULL;
    if (count != NULL)
        *count = 0;
    if (words == NULL || lens == NULL || count == NULL || (query == NULL && query_len > 0)) {
        if (c != NULL)
            return kvi_engine_error(c, KVI_E_INVALID, "kvi_split_words: NULL argument");
        return KVI_E_INVALID;
    }

    const unsigned char *q = (const unsigned char *)query;
    struct wordlist wl = {NULL, NULL, 0, 0};
    /* A word is never longer than the query, so one scratch buffer will do. */
    char *cur = query_len < SIZE_MAX ? malloc(query_len + 1) : NULL;
    kvi_status st = KVI_OK;
    size_t i = 0;

    if (cur == NULL)
        goto nomem;
    for (;;) {
        while (i < query_len && is_blank(q[i]))
            i++;
        if (i >= query_len)
            break;

        size_t n = 0;
        int done = 0;
        while (!done) {
            if (i >= query_len || is_blank(q[i]))
                break;
            unsigned char ch = q[i];
            if (ch != '"' && ch != '\'') {
                cur[n++] = (char)ch;
                i++;
                continue;
            }
            /* A quoted part: runs to its closing quote, which must end
             * the word. */
            unsigned char quote = ch;
            size_t start = i++;
            for (;;) {
                if (i >= query_len) {
                    st = syntax_error(c, quote == '"' ? UNTERMINATED_DOUBLE : UNTERMINATED_SINGLE,
                                      wl.count + 1, start);
                    goto fail;
                }
                ch = q[i];
                if (ch == quote) {
                    i++;
                    if (i < query_len && !is_blank(q[i])) {
                        st = syntax_error(c, QUOTE_NOT_ENDING_WORD, wl.count + 1, i);
                        goto fail;
                    }
                    done = 1;
                    break;
                }
                if (ch == '\\' && i + 1 < query_len) {
                    unsigned char e = q[i + 1];
                    if (quote == '\'') {
                        if (e == '\'') {
                            cur[n++] = '\'';
                            i += 2;
                        } else {
                            cur[n++] = '\\';
                            i++;
                        }
                        continue;
                    }
                    int hi, lo;
                    if (e == 'x' && i + 3 < query_len && (hi = kvi__hexval(q[i + 2])) >= 0 &&
                        (lo = kvi__hexval(q[i + 3])) >= 0) {
                        cur[n++] = (char)(hi * 16 + lo);
                        i += 4;
                        continue;
                    }
                    switch (e) {
                    case 'n':
                        cur[n++] = '\n';
                        break;
                    case 'r':
                        cur[n++] = '\r';
                        break;
                    case 't':
                        cur[n++] = '\t';
                        break;
                    case 'a':
                        cur[n++] = '\a';
                        break;
                    case 'b':
                        cur[n++] = '\b';
                        break;
                    default:
                        cur[n++] = (char)e;
                        break;
                    }
                    i += 2;
                    continue;
                }
                cur[n++] = (char)ch;
                i++;
            }
        }
        if (push_word(&wl, cur, n) != 0)
            goto nomem;
    }
    free(cur);
    *words = wl.words;
    *lens = wl.lens;
    *count = wl.count;
    return KVI_OK;

nomem:
    st = c != NULL ? kvi_engine_error(c, KVI_E_NOMEM, "raw query: out of memory") : KVI_E_NOMEM;
fail:
    free(cur);
    kvi_words_free(wl.words, wl.lens, wl.count);
    return st;
}

/* Frees what kvi_split_words returned.  NULL arrays are accepted. */
void kvi_words_free(char **words, size_t *lens, size_t count)
{
    if (words != NULL)
        for (size_t i = 0; i < count; i++)
            free(words[i]);
    free(words);
    free(lens);
}
