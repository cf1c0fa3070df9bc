/*
 * handle.c -- what a connection handle tells: its id, engine, capability
 * bits, common options and the engine's private state and parsed options.
 * Plain reads of fields that are fixed once the handle is published.
 */
#include "core/types.h"

const char *kvi_conn_id(const kvi_conn *c)
{
    return c ? c->id : NULL;
}

const char *kvi_conn_engine(const kvi_conn *c)
{
    return c ? c->engine->name : NULL;
}

uint32_t kvi_conn_caps(const kvi_conn *c)
{
    return c ? c->caps : 0;
}

void kvi_conn_set_caps(kvi_conn *c, uint32_t caps)
{
    /* Only bits the engine's slots can serve: the core relies on them. */
    uint32_t needs_slot =
        KVI_CAP_COUNTERS | KVI_CAP_ITERATE | KVI_CAP_RAW_QUERY | KVI_CAP_TTL | KVI_CAP_CONDITIONAL;
    c->caps = (caps & ~needs_slot) | (caps & c->engine->caps & needs_slot);
}

void *kvi_conn_priv(kvi_conn *c)
{
    return c->priv;
}

kvi *kvi_conn_context(kvi_conn *c)
{
    return c->k;
}

uint32_t kvi_conn_connect_timeout_ms(const kvi_conn *c)
{
    return c->connect_timeout_ms;
}

uint32_t kvi_conn_timeout_ms(const kvi_conn *c)
{
    return c->timeout_ms;
}

int kvi_conn_lazy(const kvi_conn *c)
{
    return c->lazy;
}

const void *kvi_conn_options(const kvi_conn *c)
{
    return c->options;
}
