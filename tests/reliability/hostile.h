/*
 * hostile.h -- a fake TCP server on 127.0.0.1 that answers the redis or
 * memcached (binary protocol) client in a hostile way, for the tests that
 * check that every call still ends in time with an error and bounded
 * memory.  One thread accepts; one thread per connection misbehaves.
 */
#ifndef KVI_REL_HOSTILE_H
#define KVI_REL_HOSTILE_H

#include <stdint.h>

typedef enum rel_proto { REL_PROTO_REDIS = 0, REL_PROTO_MEMCACHED = 1 } rel_proto;

typedef enum rel_hostile_mode {
    REL_H_GARBAGE = 0,     /* each request answered with bytes outside the protocol */
    REL_H_HUGE = 1,        /* a reply announcing an absurd length, then silence */
    REL_H_HUGE_STREAM = 2, /* an absurd length, then bytes as fast as the client reads */
    REL_H_HALF = 3,        /* half a reply, then silence */
    REL_H_TRICKLE = 4,     /* a reply that never ends, one byte per second */
    REL_H_SILENT = 5,      /* reads requests, never answers */
    REL_H_CLOSE = 6,       /* closes each connection when the request arrives */
    REL_H_COUNT = 7
} rel_hostile_mode;

/* Name of a mode ("garbage", ...). */
const char *rel_hostile_mode_name(rel_hostile_mode m);

typedef struct rel_hostile rel_hostile;

/* Starts a server on a free 127.0.0.1 port.  0 on success. */
int rel_hostile_start(rel_hostile **out, rel_proto proto, rel_hostile_mode mode);

uint16_t rel_hostile_port(const rel_hostile *h);

/* Connections accepted so far. */
unsigned rel_hostile_accepted(const rel_hostile *h);

/* Bytes sent so far over all connections. */
uint64_t rel_hostile_sent(const rel_hostile *h);

/* Closes the listener and every connection, joins the threads, frees h.
 * NULL is accepted. */
void rel_hostile_stop(rel_hostile *h);

#endif
