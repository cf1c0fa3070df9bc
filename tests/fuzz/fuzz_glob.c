/*
 * fuzz_glob.c -- kvi_glob_match against a reference matcher.
 *
 * Input: first byte = pattern length, then the pattern, then the subject.
 * The reference first turns the pattern into tokens (its own reading of
 * the syntax in src/core/glob.c) and then matches by dynamic programming
 * over (token, position), so it shares no matching code with the real
 * one.  Also checks that any subject matches itself fully escaped and
 * matches "*".
 */
#include <string.h>

#include "fuzz.h"
#include "kvi/engine.h"

#define MAX_PATTERN 64
#define MAX_SUBJECT 512

enum { T_STAR, T_ANY, T_SET };

struct token {
    int kind;
    unsigned char set[256]; /* T_SET: 1 for member bytes (a literal is a set of one) */
};

static size_t tokenize(const unsigned char *g, size_t glen, struct token *t)
{
    size_t n = 0;
    for (size_t i = 0; i < glen;) {
        struct token *k = &t[n++];
        memset(k->set, 0, sizeof k->set);
        unsigned char c = g[i];
        if (c == '*') {
            k->kind = T_STAR;
            i++;
            continue;
        }
        if (c == '?') {
            k->kind = T_ANY;
            i++;
            continue;
        }
        k->kind = T_SET;
        if (c == '\\') {
            k->set[i + 1 < glen ? g[i + 1] : '\\'] = 1;
            i += i + 1 < glen ? 2 : 1;
            continue;
        }
        if (c == '[') {
            size_t j = i + 1;
            int neg = j < glen && (g[j] == '^' || g[j] == '!');
            j += (size_t)neg;
            unsigned char members[256] = {0};
            int closed = 0;
            int first = 1;
            while (j < glen) {
                if (g[j] == ']' && !first) {
                    closed = 1;
                    break;
                }
                first = 0;
                unsigned char lo = g[j];
                if (lo == '\\' && j + 1 < glen)
                    lo = g[++j];
                j++;
                unsigned char hi = lo;
                if (j + 1 < glen && g[j] == '-' && g[j + 1] != ']') {
                    hi = g[j + 1];
                    j += 2;
                    if (hi == '\\' && j < glen)
                        hi = g[j++];
                }
                unsigned a = lo < hi ? lo : hi, b = lo < hi ? hi : lo;
                for (unsigned x = a; x <= b; x++)
                    members[x] = 1;
            }
            if (closed) {
                for (int x = 0; x < 256; x++)
                    k->set[x] = (unsigned char)(members[x] != neg);
                i = j + 1;
                continue;
            }
        }
        k->set[c] = 1;
        i++;
    }
    return n;
}

static int reference(const unsigned char *g, size_t glen, const unsigned char *s, size_t slen)
{
    static struct token t[MAX_PATTERN];
    static unsigned char dp[MAX_PATTERN + 1][MAX_SUBJECT + 1];
    size_t nt = tokenize(g, glen, t);
    for (size_t ti = nt + 1; ti-- > 0;)
        for (size_t si = slen + 1; si-- > 0;) {
            int r;
            if (ti == nt)
                r = si == slen;
            else if (t[ti].kind == T_STAR)
                r = dp[ti + 1][si] || (si < slen && dp[ti][si + 1]);
            else
                r = si < slen && (t[ti].kind == T_ANY || t[ti].set[s[si]]) && dp[ti + 1][si + 1];
            dp[ti][si] = (unsigned char)r;
        }
    return dp[0][0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t glen = data[0] % (MAX_PATTERN + 1);
    if (glen > size - 1)
        glen = size - 1;
    const unsigned char *g = data + 1;
    const unsigned char *s = g + glen;
    size_t slen = size - 1 - glen;
    if (slen > MAX_SUBJECT)
        slen = MAX_SUBJECT;

    int got = kvi_glob_match((const char *)g, glen, s, slen);
    int want = reference(g, glen, s, slen);
    if (got != want)
        fprintf(stderr, "glob %.*s on %.*s: got %d, reference %d\n", (int)glen, (const char *)g,
                (int)slen, (const char *)s, got, want);
    FUZZ_CHECK(got == want);

    FUZZ_CHECK(kvi_glob_match("*", 1, s, slen) == 1);
    static char esc[2 * MAX_SUBJECT];
    for (size_t i = 0; i < slen; i++) {
        esc[2 * i] = '\\';
        esc[2 * i + 1] = (char)s[i];
    }
    FUZZ_CHECK(kvi_glob_match(esc, 2 * slen, s, slen) == 1);
    return 0;
}
