/*
 * glob.c -- byte-string glob matching for key listing and removal.
 *
 * Syntax: '*' any run of bytes (also none), '?' any one byte, '[abc]' one
 * of a set, '[a-z]' a range (a reversed range such as [z-a] means the
 * same), '[^a]' / '[!a]' any byte but those, '\c' the byte c itself (also
 * inside brackets).  A '[' without its ']' and a trailing '\' match
 * themselves.  A ']' right after '[' (or '[^') is a member of the set.
 */
#include <string.h>

#include "core/internal.h"

/*
 * Parses the class starting at g[i] == '[' and tests byte ch against it.
 * Returns the index just past the closing ']', or 0 when the class is not
 * terminated (then the caller treats '[' as a literal byte).
 */
static size_t match_class(const unsigned char *g, size_t glen, size_t i, unsigned char ch, int *hit)
{
    size_t j = i + 1;
    int negate = 0;
    int found = 0;

    if (j < glen && (g[j] == '^' || g[j] == '!')) {
        negate = 1;
        j++;
    }
    size_t first = j;
    for (;;) {
        if (j >= glen)
            return 0;
        if (g[j] == ']' && j > first)
            break;
        unsigned char lo = g[j];
        if (lo == '\\' && j + 1 < glen)
            lo = g[++j];
        j++;
        unsigned char hi = lo;
        /* "a-z" is a range unless the '-' is the last byte before ']'. */
        if (j + 1 < glen && g[j] == '-' && g[j + 1] != ']') {
            j++;
            hi = g[j];
            if (hi == '\\' && j + 1 < glen)
                hi = g[++j];
            j++;
        }
        if (lo > hi) {
            unsigned char t = lo;
            lo = hi;
            hi = t;
        }
        if (ch >= lo && ch <= hi)
            found = 1;
    }
    *hit = found != negate;
    return j + 1;
}

/*
 * Matches one pattern element at g[*gi] against byte ch (not a '*').
 * Returns 1 on a match and advances *gi past the element.
 */
static int match_one(const unsigned char *g, size_t glen, size_t *gi, unsigned char ch)
{
    size_t i = *gi;
    unsigned char pc = g[i];

    if (pc == '?') {
        *gi = i + 1;
        return 1;
    }
    if (pc == '[') {
        int hit = 0;
        size_t next = match_class(g, glen, i, ch, &hit);
        if (next != 0) {
            *gi = next;
            return hit;
        }
        /* unterminated: a literal '[' */
    } else if (pc == '\\' && i + 1 < glen) {
        i++;
        pc = g[i];
    }
    *gi = i + 1;
    return pc == ch;
}

/*
 * Returns 1 when the whole of str[0..str_len) matches glob[0..glob_len)
 * (syntax above), else 0.  Both are byte strings (NUL is an ordinary
 * byte); NULL is accepted with length 0.  Runs in O(glob_len * str_len)
 * time at worst and constant space: only the last '*' is ever backtracked
 * to, so patterns like "a*a*a*a*b" cannot explode.  Thread-safe.
 */
int kvi_glob_match(const char *glob, size_t glob_len, const void *str, size_t str_len)
{
    const unsigned char *g = (const unsigned char *)glob;
    const unsigned char *s = str;
    size_t gi = 0, si = 0;
    size_t star_g = SIZE_MAX, star_s = 0;

    if ((g == NULL && glob_len > 0) || (s == NULL && str_len > 0))
        return 0;
    while (si < str_len) {
        if (gi < glob_len && g[gi] == '*') {
            /* Remember where to resume: this star then eats one more byte. */
            while (gi < glob_len && g[gi] == '*')
                gi++;
            if (gi == glob_len)
                return 1;
            star_g = gi;
            star_s = si;
            continue;
        }
        size_t next = gi;
        if (gi < glob_len && match_one(g, glob_len, &next, s[si])) {
            gi = next;
            si++;
            continue;
        }
        if (star_g == SIZE_MAX)
            return 0;
        gi = star_g;
        si = ++star_s;
    }
    while (gi < glob_len && g[gi] == '*')
        gi++;
    return gi == glob_len;
}
