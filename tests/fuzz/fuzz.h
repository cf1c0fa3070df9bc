/*
 * fuzz.h -- what the fuzz targets share: the libFuzzer entry point and a
 * check that stays on in release builds (assert() would not).
 */
#ifndef KVI_FUZZ_H
#define KVI_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* KVI_FUZZ_H */
