/*
 * fuzz_mcwire.c -- the memcached engine's binary protocol reply parser
 * (src/engines/memcached/mc_wire.c) on a stream of replies as a server
 * would send them.
 *
 * Checks, besides "no crash": every reply taken lies inside the input
 * (header + extras + key + value == the bytes taken, none over the cap),
 * and parsing the same stream fed one byte more at a time agrees with
 * parsing it whole (a reply is never taken before all of it is there, and
 * "needs more" says how much).
 */
#include <string.h>

#include "engines/memcached/mc_wire.h"
#include "fuzz.h"

#define MAX_BODY 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        struct mcw_reply r;
        size_t need = 0;
        long n = kvi__mcw_parse(data + pos, size - pos, MAX_BODY, &r, &need);
        if (n <= 0) {
            FUZZ_CHECK(n == -1 || need > size - pos);
            FUZZ_CHECK(need <= MCW_HEADER + MAX_BODY);
            break;
        }
        FUZZ_CHECK((size_t)n <= size - pos && (size_t)n >= MCW_HEADER);
        FUZZ_CHECK((size_t)n <= MCW_HEADER + MAX_BODY);
        FUZZ_CHECK(r.key >= data + pos + MCW_HEADER);
        FUZZ_CHECK(r.value == r.key + r.key_len);
        FUZZ_CHECK(r.value + r.value_len == data + pos + (size_t)n);
        /* Any prefix short of the whole reply needs more. */
        struct mcw_reply r2;
        size_t cut = (size_t)n - 1 - (size_t)(data[pos] % (size_t)n);
        FUZZ_CHECK(kvi__mcw_parse(data + pos, cut, MAX_BODY, &r2, NULL) == 0);
        /* The same reply parsed from a copy gives the same fields. */
        uint8_t copy[MCW_HEADER + MAX_BODY];
        memcpy(copy, data + pos, (size_t)n);
        FUZZ_CHECK(kvi__mcw_parse(copy, (size_t)n, MAX_BODY, &r2, NULL) == n);
        FUZZ_CHECK(r2.status == r.status && r2.opaque == r.opaque && r2.cas == r.cas &&
                   r2.flags == r.flags && r2.value_len == r.value_len &&
                   memcmp(r2.value, r.value, r.value_len) == 0);
        pos += (size_t)n;
    }
    return 0;
}
