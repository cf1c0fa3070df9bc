/*
 * mc_breaker.c -- one circuit breaker (the core's kvi_breaker) per server
 * of the pool: a server that stops answering costs one timeout, not one
 * per call.  A keyed call asks the breaker of the server its key hashes to
 * (mc_slots.c); pool-wide calls (ping, stats, the probe at open) do not.
 */
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "mc_engine.h"

kvi_status kvi__mc_servers_init(kvi_conn *c, struct mc_conn *m, const kvi_breaker_options *opt)
{
    uint32_t n = memcached_server_count(m->master);
    m->servers = kvi_engine_malloc(c, sizeof *m->servers * (n ? n : 1));
    if (m->servers == NULL)
        return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    memset(m->servers, 0, sizeof *m->servers * (n ? n : 1));
    for (uint32_t i = 0; i < n; i++) {
        struct mc_server *s = &m->servers[i];
        const memcached_instance_st *in = memcached_server_instance_by_position(m->master, i);
        const char *host = memcached_server_name(in);
        snprintf(s->name, sizeof s->name, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host,
                 (unsigned)memcached_server_port(in));
        m->nservers = i + 1;
        /* Resolved now, at definition time: the batch path connects
         * without blocking and never asks the resolver. */
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)memcached_server_port(in));
        struct addrinfo hints, *ai = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        if (getaddrinfo(host, port, &hints, &ai) == 0 && ai != NULL &&
            ai->ai_addrlen <= sizeof s->addr) {
            memcpy(&s->addr, ai->ai_addr, ai->ai_addrlen);
            s->addrlen = (socklen_t)ai->ai_addrlen;
        }
        if (ai != NULL)
            freeaddrinfo(ai);
        s->breaker = kvi_breaker_new(c, opt);
        if (s->breaker == NULL)
            return kvi_engine_error(c, KVI_E_NOMEM, "out of memory");
    }
    return KVI_OK;
}

void kvi__mc_servers_free(kvi_conn *c, struct mc_conn *m)
{
    for (uint32_t i = 0; i < m->nservers; i++)
        kvi_breaker_free(c, m->servers[i].breaker);
    kvi_engine_free(c, m->servers);
    m->servers = NULL;
    m->nservers = 0;
}

struct mc_server *kvi__mc_server_of(const struct mc_conn *m, memcached_st *mc, const char *mkey,
                                    size_t mkey_len)
{
    if (m->nservers == 0)
        return NULL;
    if (m->nservers == 1)
        return &m->servers[0];
    uint32_t i = memcached_generate_hash(mc, mkey, mkey_len);
    return i < m->nservers ? &m->servers[i] : NULL;
}
