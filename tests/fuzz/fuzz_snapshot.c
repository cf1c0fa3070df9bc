/*
 * fuzz_snapshot.c -- kvi__local_snapshot_load, the local engine's snapshot
 * loader, on arbitrary bytes.
 *
 * Checks: the status is KVI_OK or KVI_E_CORRUPT (no insert error with an
 * unlimited table); a rejected image inserts nothing ("a bad file changes
 * nothing") and names an offset inside the image; an accepted one inserts
 * at most as many entries as the header's record count.
 */
#include <string.h>

#include "engines/local/local.h"
#include "fuzz.h"

#define MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kvi *k;
    if (size > MAX_INPUT)
        return 0;
    if (k == NULL)
        FUZZ_CHECK(kvi_new(&k) == KVI_OK);
    kvi__lt_config cfg = {0, KVI__LT_EVICT_NONE};
    kvi__lt *t = NULL;
    FUZZ_CHECK(kvi__lt_new(k, &cfg, &t) == KVI_OK);

    uint64_t bad_offset = 0;
    char why[256];
    kvi_status st = kvi__local_snapshot_load(t, data, size, &bad_offset, why, sizeof why);
    kvi__lt_stats s;
    kvi__lt_stats_get(t, &s);
    FUZZ_CHECK(st == KVI_OK || st == KVI_E_CORRUPT);
    if (st == KVI_E_CORRUPT) {
        FUZZ_CHECK(s.entries == 0);
        FUZZ_CHECK(bad_offset <= size);
        FUZZ_CHECK(why[0] != '\0' && memchr(why, '\0', sizeof why) != NULL);
    } else {
        uint64_t count = 0;
        for (int i = 7; i >= 0; i--)
            count = (count << 8) | data[24 + i];
        FUZZ_CHECK(s.entries <= count);
    }
    kvi__lt_free(t);
    return 0;
}
