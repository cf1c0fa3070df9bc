/*
 * fuzz_config.c -- kvi__config_parse with a line handler that parses each
 * line as a URL (as kvi_load_config does, without a context).
 *
 * Checks: every line handed over is trimmed, non-empty, not a comment,
 * has no NUL inside and comes with a strictly increasing line number that
 * does not exceed the number of lines of the text.
 */
#include <string.h>

#include "core/internal.h"
#include "fuzz.h"

#define MAX_INPUT 16384

struct seen {
    size_t last_lineno;
    size_t max_lineno;
};

static kvi_status on_line(void *ud, const char *line, size_t lineno)
{
    struct seen *s = ud;
    size_t len = strlen(line);
    FUZZ_CHECK(len > 0);
    FUZZ_CHECK(line[0] != '#');
    FUZZ_CHECK(line[0] != ' ' && line[0] != '\t');
    FUZZ_CHECK(line[len - 1] != ' ' && line[len - 1] != '\t' && line[len - 1] != '\r');
    FUZZ_CHECK(strchr(line, '\n') == NULL);
    FUZZ_CHECK(lineno > s->last_lineno && lineno <= s->max_lineno);
    s->last_lineno = lineno;

    kvi_url *u = NULL;
    char err[256];
    kvi_status st = kvi_url_parse(line, &u, err, sizeof err);
    FUZZ_CHECK(st == KVI_OK || st == KVI_E_BAD_URL);
    kvi_url_free(u);
    /* Go on after bad lines too, to reach more of the text. */
    return KVI_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    struct seen s = {0, 1};
    for (size_t i = 0; i < size; i++)
        s.max_lineno += data[i] == '\n';
    kvi_status st = kvi__config_parse((const char *)data, size, on_line, &s);
    FUZZ_CHECK(st == KVI_OK || st == KVI_E_CORRUPT);
    if (st == KVI_E_CORRUPT)
        FUZZ_CHECK(memchr(data, '\0', size) != NULL);
    return 0;
}
