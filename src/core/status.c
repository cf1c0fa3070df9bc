/* status.c -- names and texts of kvi_status, made from KVI_STATUS_MAP. */
#include "kvi/kvi.h"

static const char *const status_text[] = {
#define KVI__TEXT(name, num, msg, exitcode) [num] = msg,
    KVI_STATUS_MAP(KVI__TEXT)
#undef KVI__TEXT
};

static const char *const status_name[] = {
#define KVI__NAME(name, num, msg, exitcode) [num] = "KVI_" #name,
    KVI_STATUS_MAP(KVI__NAME)
#undef KVI__NAME
};

_Static_assert(sizeof status_text / sizeof status_text[0] == KVI_STATUS_COUNT,
               "KVI_STATUS_COUNT must match KVI_STATUS_MAP");

const char *kvi_strerror(kvi_status st)
{
    unsigned i = (unsigned)st;
    if (i >= KVI_STATUS_COUNT || status_text[i] == NULL)
        return "unknown status";
    return status_text[i];
}

const char *kvi_status_name(kvi_status st)
{
    unsigned i = (unsigned)st;
    if (i >= KVI_STATUS_COUNT || status_name[i] == NULL)
        return "KVI_UNKNOWN";
    return status_name[i];
}

const char *kvi_version(void)
{
    return KVI_VERSION_STRING;
}
