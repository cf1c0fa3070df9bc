/*
 * numbers.c -- strict decimal int64 parsing and formatting, shared by the
 * core and the engines so that "what is a counter" has one definition.
 */
#include <stdint.h>
#include <string.h>

#include "core/internal.h"

/*
 * Parses exactly one decimal int64 from text[0..len): an optional '-', then
 * digits, with no leading zeros except "0" itself, no "-0", no '+', no
 * blanks, and a value within INT64_MIN..INT64_MAX.  Returns 1 and stores
 * the value in *out (out may be NULL) on success, 0 otherwise (*out
 * untouched).  Example: "-42" -> -42; "042", " 1", "1 ", "+1", "" -> 0.
 * Thread-safe.
 */
int kvi_parse_int64(const char *text, size_t len, int64_t *out)
{
    if (text == NULL || len == 0)
        return 0;
    size_t i = 0;
    int neg = 0;
    if (text[0] == '-') {
        neg = 1;
        i = 1;
        if (len == 1)
            return 0;
    }
    if (text[i] == '0' && (len - i > 1 || neg))
        return 0; /* leading zero, or "-0" */

    /* Accumulate as a magnitude so that INT64_MIN, whose magnitude is one
     * more than INT64_MAX, parses exactly. */
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t mag = 0;
    for (; i < len; i++) {
        char ch = text[i];
        if (ch < '0' || ch > '9')
            return 0;
        uint64_t digit = (uint64_t)(ch - '0');
        if (mag > (limit - digit) / 10u)
            return 0;
        mag = mag * 10u + digit;
    }
    if (out != NULL) {
        if (!neg)
            *out = (int64_t)mag;
        else if (mag == (uint64_t)INT64_MAX + 1u)
            *out = INT64_MIN;
        else
            *out = -(int64_t)mag;
    }
    return 1;
}

/*
 * Writes v in decimal ("-9223372036854775808" at most: 20 characters plus
 * the NUL) into buf, which must hold at least 21 bytes, and returns the
 * length without the NUL.  Every value, INT64_MIN included, round-trips
 * through kvi_parse_int64.  Thread-safe.
 */
size_t kvi_format_int64(int64_t v, char *buf)
{
    char tmp[21];
    size_t n = 0;
    /* 0 - (uint64_t)v is the magnitude also for INT64_MIN. */
    uint64_t mag = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + (int)(mag % 10u));
        mag /= 10u;
    } while (mag != 0);
    size_t len = 0;
    if (v < 0)
        buf[len++] = '-';
    while (n > 0)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}
