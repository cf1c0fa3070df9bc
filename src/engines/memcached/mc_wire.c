/*
 * mc_wire.c -- memcached binary protocol encoding and reply parsing (see
 * mc_wire.h).  Pure: no I/O, no allocation.
 */
#include <string.h>

#include "mc_wire.h"

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

long kvi__mcw_parse(const uint8_t *buf, size_t len, size_t max_body, struct mcw_reply *r,
                    size_t *need)
{
    if (need != NULL)
        *need = MCW_HEADER;
    if (len >= 1 && buf[0] != MCW_RES_MAGIC)
        return -1;
    if (len < MCW_HEADER)
        return 0;
    uint16_t keylen = get16(buf + 2);
    uint8_t extlen = buf[4];
    uint32_t bodylen = get32(buf + 8);
    if (bodylen > max_body || (size_t)extlen + keylen > bodylen)
        return -1;
    uint8_t opcode = buf[1];
    uint16_t status = get16(buf + 6);
    /* A successful GET carries exactly its 4 bytes of flags. */
    if (opcode == MCW_OP_GET && status == MCW_OK && extlen != 4)
        return -1;
    size_t total = MCW_HEADER + (size_t)bodylen;
    if (need != NULL)
        *need = total;
    if (len < total)
        return 0;
    const uint8_t *body = buf + MCW_HEADER;
    memset(r, 0, sizeof *r);
    r->opcode = opcode;
    r->status = status;
    r->opaque = get32(buf + 12);
    r->cas = (uint64_t)get32(buf + 16) << 32 | get32(buf + 20);
    if (extlen >= 4) {
        r->flags = get32(body);
        r->has_flags = 1;
    }
    r->key = body + extlen;
    r->key_len = keylen;
    r->value = body + extlen + keylen;
    r->value_len = bodylen - extlen - keylen;
    return (long)total;
}

void kvi__mcw_header(uint8_t *out, uint8_t opcode, uint16_t keylen, uint8_t extlen,
                     uint32_t bodylen, uint32_t opaque, uint64_t cas)
{
    out[0] = MCW_REQ_MAGIC;
    out[1] = opcode;
    put16(out + 2, keylen);
    out[4] = extlen;
    out[5] = 0; /* raw bytes */
    put16(out + 6, 0);
    put32(out + 8, bodylen);
    put32(out + 12, opaque);
    put32(out + 16, (uint32_t)(cas >> 32));
    put32(out + 20, (uint32_t)cas);
}

size_t kvi__mcw_key_req(uint8_t *out, uint8_t opcode, const char *key, size_t key_len,
                        uint32_t opaque)
{
    kvi__mcw_header(out, opcode, (uint16_t)key_len, 0, (uint32_t)key_len, opaque, 0);
    memcpy(out + MCW_HEADER, key, key_len);
    return MCW_HEADER + key_len;
}

size_t kvi__mcw_store_head(uint8_t *out, uint8_t opcode, const char *key, size_t key_len,
                           size_t val_len, uint32_t flags, uint32_t exptime, uint64_t cas,
                           uint32_t opaque)
{
    kvi__mcw_header(out, opcode, (uint16_t)key_len, 8, (uint32_t)(8 + key_len + val_len), opaque,
                    cas);
    put32(out + MCW_HEADER, flags);
    put32(out + MCW_HEADER + 4, exptime);
    memcpy(out + MCW_HEADER + 8, key, key_len);
    return MCW_HEADER + 8 + key_len;
}

size_t kvi__mcw_sasl_plain(uint8_t *out, size_t cap, const char *user, const char *password)
{
    size_t ul = strlen(user), pl = strlen(password);
    if (2 + ul + pl > cap)
        return 0;
    out[0] = 0;
    memcpy(out + 1, user, ul);
    out[1 + ul] = 0;
    memcpy(out + 2 + ul, password, pl);
    return 2 + ul + pl;
}
