/* status.c -- names and texts of kvi_status, made from KVI_STATUS_MAP, and
 * the names of the capability bits. */
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

static const char *const cap_name[KVI_CAP_BITS] = {
    "ttl",       "counters",   "neg_counters", "binary",      "iterate",
    "raw_query", "persistent", "shared",       "conditional",
};

_Static_assert(KVI_CAP_CONDITIONAL == 1u << (KVI_CAP_BITS - 1),
               "KVI_CAP_BITS must follow the highest KVI_CAP_* bit");

const char *kvi_cap_name(uint32_t cap)
{
    if (cap == 0 || (cap & (cap - 1)) != 0)
        return NULL;
    unsigned bit = (unsigned)__builtin_ctz(cap);
    return bit < KVI_CAP_BITS ? cap_name[bit] : NULL;
}

const char *kvi_version(void)
{
    return KVI_VERSION_STRING;
}
