/*
 * mc_wire.h -- memcached binary protocol: request encoding and reply
 * parsing (pure functions, no I/O, no kvi_conn; fuzzed by
 * tests/fuzz/fuzz_mcwire.c).
 *
 * Every request and reply starts with a 24-byte header (magic 0x80 for a
 * request, 0x81 for a reply; big-endian fields): opcode, key length, extras
 * length, data type, vbucket (request) / status (reply), total body length,
 * an opaque the server copies into its reply (kvi uses it to match replies
 * to operations) and a CAS.  The body holds extras, key, value in that
 * order.  Nothing read from a server is trusted: the parser checks every
 * length against the body and the body against a cap before it is read.
 */
#ifndef KVI_MC_WIRE_H
#define KVI_MC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MCW_HEADER 24u
#define MCW_REQ_MAGIC 0x80u
#define MCW_RES_MAGIC 0x81u

/* Opcodes kvi sends. */
#define MCW_OP_GET 0x00u
#define MCW_OP_SET 0x01u /* with a CAS in the header: compare-and-swap */
#define MCW_OP_ADD 0x02u
#define MCW_OP_DELETE 0x04u
#define MCW_OP_NOOP 0x0au
#define MCW_OP_SASL_AUTH 0x21u

/* Reply status codes. */
#define MCW_OK 0x00u
#define MCW_ENOENT 0x01u
#define MCW_EEXISTS 0x02u
#define MCW_E2BIG 0x03u
#define MCW_EINVAL 0x04u
#define MCW_NOT_STORED 0x05u
#define MCW_DELTA_BADVAL 0x06u
#define MCW_AUTH_ERROR 0x20u
#define MCW_AUTH_CONTINUE 0x21u
#define MCW_UNKNOWN_COMMAND 0x81u
#define MCW_ENOMEM 0x82u
#define MCW_BUSY 0x85u
#define MCW_ETMPFAIL 0x86u

/* Largest reply body kvi reads: the largest value kvi stores (512 MiB)
 * plus a mapped key's envelope and the header's extras and key. */
#define MCW_MAX_BODY ((512u << 20) + 4096u)

/* A reply as parsed (pointers into the caller's buffer). */
struct mcw_reply {
    uint8_t opcode;
    uint16_t status;
    uint32_t opaque;
    uint64_t cas;
    uint32_t flags;     /* extras of a GET reply (0 when it has none) */
    int has_flags;      /* the reply had the 4 bytes of flags */
    const uint8_t *key; /* keylen bytes */
    size_t key_len;
    const uint8_t *value; /* the rest of the body: a GET's value, an error text */
    size_t value_len;
};

/* Parses the reply at the start of buf (len bytes).  Returns the bytes it
 * takes (> 0) with *r filled, 0 when more bytes are needed (*need, when not
 * NULL, is then the total the reply needs once its header is there, else
 * MCW_HEADER), or -1 when the bytes are not a valid reply (wrong magic,
 * extras + key longer than the body, a body over max_body, a GET reply with
 * extras other than 4 bytes). */
long kvi__mcw_parse(const uint8_t *buf, size_t len, size_t max_body, struct mcw_reply *r,
                    size_t *need);

/* Bytes of a request with these lengths (header included). */
static inline size_t kvi__mcw_req_size(size_t extlen, size_t keylen, size_t vallen)
{
    return MCW_HEADER + extlen + keylen + vallen;
}

/* Writes a request header for opcode into out (MCW_HEADER bytes). */
void kvi__mcw_header(uint8_t *out, uint8_t opcode, uint16_t keylen, uint8_t extlen,
                     uint32_t bodylen, uint32_t opaque, uint64_t cas);

/* Writes a whole GET / DELETE request (key_len <= 250) into out
 * (kvi__mcw_req_size(0, key_len, 0) bytes); returns its size. */
size_t kvi__mcw_key_req(uint8_t *out, uint8_t opcode, const char *key, size_t key_len,
                        uint32_t opaque);

/* Writes the header, extras (flags, exptime) and key of a SET / ADD (cas
 * non-zero: compare-and-swap) whose value of val_len bytes follows
 * (written by the caller); returns the bytes written (24 + 8 + key_len). */
size_t kvi__mcw_store_head(uint8_t *out, uint8_t opcode, const char *key, size_t key_len,
                           size_t val_len, uint32_t flags, uint32_t exptime, uint64_t cas,
                           uint32_t opaque);

/* The body of a SASL PLAIN authentication ("\0user\0password") written into
 * out (cap bytes); returns its length, 0 when it does not fit. */
size_t kvi__mcw_sasl_plain(uint8_t *out, size_t cap, const char *user, const char *password);

#endif /* KVI_MC_WIRE_H */
