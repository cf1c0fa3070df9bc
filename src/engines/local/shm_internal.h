/*
 * shm_internal.h -- the shared segment's structures, shared by shm.c
 * (segment, locks, undo log) and shm_table.c (the table).  Not installed.
 * Everything here lives inside the segment except struct kvi__sh, the
 * per-process handle.
 */
#ifndef KVI_LOCAL_SHM_INTERNAL_H
#define KVI_LOCAL_SHM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "engines/local/local.h"
#include "engines/local/shm.h"

#define SH_LAYOUT 4u /* 2: twice the buckets; 3: snapshot flag, savers; 4: operation counts */
#define SH_SHARDS 64u
#define SH_GRAN 16u /* allocation granule: links are granule numbers */
#define SH_NCLASS 144u
#define SH_LOG_MAX 64u
#define SH_UNDO_BYTES 16u
#define SH_SLOTS 256u
#define SH_SHARDS_OFF 4096u

#define SH_USED 0xA5u
#define SH_FREE 0x5Au

/* An undo record: the bytes at off before a write under the shard lock. */
struct sh_undo {
    uint64_t off;
    uint32_t len;
    uint32_t pad_;
    unsigned char old[SH_UNDO_BYTES];
};

struct sh_header {
    /* Fixed at creation and covered by the checksum. */
    char magic[8];
    uint32_t layout;
    uint32_t header_size;
    uint64_t size;
    uint32_t creator_uid;
    uint32_t mode;
    uint32_t nshards;
    uint32_t shard_size;
    uint32_t mutex_size;
    uint32_t evict; /* 0 none, 1 lru */
    uint64_t seed;
    uint64_t shards_off;
    uint64_t nbuckets;    /* per shard, a power of two */
    uint64_t arena_bytes; /* per shard */
    uint32_t lru_shift;
    uint32_t pad_;
    int64_t created_ms;
    uint64_t checksum; /* FNV-1a 64 of the bytes above */
    /* Mutable. */
    _Atomic uint32_t ready; /* 1 once formatted */
    uint32_t pad2_;
    _Atomic uint64_t repairs;
    _Atomic uint32_t snap_loaded; /* a process with file= loaded its snapshot */
    uint32_t pad3_;
    /* Operation counts of every process (kvi stats), beside the shards'
     * own: calls that take no one shard's lock (walks, ping, refused
     * writes, a lock that cannot be recovered), and the calls of every
     * kind that ended with an error.  Both are rare, so an atomic add on
     * this shared line costs nothing on the paths that matter. */
    _Atomic uint64_t ops_other;
    _Atomic uint64_t errors;
    pthread_mutex_t reg_lock; /* robust; guards slots and saves */
    int32_t slots[SH_SLOTS];  /* pids of attached processes, 0 = free */
    uint8_t saves[SH_SLOTS];  /* that process has file= (nonzero) */
};

_Static_assert(sizeof(struct sh_header) <= SH_SHARDS_OFF, "header must fit before the shards");

/* One shard.  Fields marked "logged" change only through kvi__sh_log'ged
 * writes; the statistics are plain counters (a kill may lose the ticks
 * of the operation in progress: a batch adds its keys' ticks to a shard
 * once, before it unlocks it).  ops, hits and misses count the operations
 * of every process on the shard's keys, under the lock the operation
 * holds anyway: they sit
 * on the lock's cache line (glibc's mutex is 40 bytes), which the locker
 * already owns, so counting moves no other line between processes.  They
 * are untrusted like everything in the segment: the reader clamps them
 * (hits + misses <= ops per shard, sums saturate). */
struct sh_shard {
    _Alignas(64) pthread_mutex_t lock;      /* robust, process-shared */
    uint64_t ops;                           /* key operations (the kind of each: sh_count) */
    uint64_t hits;                          /* fetches and counter reads that found the key */
    uint64_t misses;                        /* operations that ended KVI_NOT_FOUND */
    uint64_t top;                           /* logged: first never-carved byte */
    uint64_t entries;                       /* logged */
    uint64_t bytes;                         /* logged: key + value bytes */
    uint64_t memory;                        /* logged: bytes of blocks held by entries */
    uint64_t expiring;                      /* logged: entries with an expiry */
    uint64_t bits[(SH_NCLASS + 63u) / 64u]; /* logged: non-empty free lists */
    uint32_t heads[SH_NCLASS];              /* logged: free-list heads (valid when bit set) */
    uint64_t buckets_off;                   /* fixed */
    uint64_t arena_off;                     /* fixed */
    uint64_t arena_end;                     /* fixed */
    uint64_t pad2_[2]; /* the logged fields and the log keep layout 3's alignment */
    uint64_t expired;
    uint64_t evicted;
    uint64_t changes;
    uint64_t repairs;
    uint64_t sweep_idx;
    uint64_t lru_clock;
    uint64_t rng;
    uint32_t log_n;
    uint32_t pad_;
    struct sh_undo log[SH_LOG_MAX];
};

_Static_assert(sizeof(pthread_mutex_t) != 40 || offsetof(struct sh_shard, misses) + 8u <= 64u,
               "the operation counters share the lock's cache line");

/* A block of the arena: an entry (state SH_USED) or a free block (SH_FREE,
 * only next, cls and state meaningful: they fit the smallest block, one
 * granule).  24 bytes, then key and value. */
struct sh_ent {
    uint32_t next; /* granule number of the next in the chain / free list */
    uint8_t cls;   /* size class of the block */
    uint8_t state; /* SH_USED or SH_FREE */
    uint16_t klen;
    uint32_t hash; /* bits 24..55 of the key's hash */
    uint32_t vlen;
    uint64_t xl; /* expire_ms (48 bits, 0 = none) << 16 | lru stamp (16 bits) */
    unsigned char data[];
};

/* Bytes of a free block's header (next, cls, state). */
#define SH_FREE_HEADER 8u

_Static_assert(sizeof(struct sh_ent) == 24, "entry header must stay 24 bytes");

/* Where a shard's buckets and arena lie: computed from the header's
 * geometry, checked against the segment once at attach and kept in the
 * process, so that no offset read later from the segment is followed. */
struct sh_geo {
    uint64_t buckets_off;
    uint64_t arena_off;
    uint64_t arena_end;
};

/* The per-process handle (in the process's heap). */
struct kvi__sh {
    kvi *k;
    unsigned char *base;
    size_t size;
    struct sh_header *h;
    struct sh_shard *shards;
    uint64_t seed;
    uint64_t nbmask;
    unsigned lru_shift;
    int evict;
    pid_t pid;
    int unlink_on_close;
    int left;                  /* kvi__sh_leave done */
    int readonly;              /* shm_readonly=yes: a private copy, never registered */
    int saves;                 /* registered as a process with file= */
    uint64_t max_steps;        /* most entries a shard can hold: a longer chain loops */
    const char *_Atomic fault; /* what the last refused link was (a literal) */
    struct sh_geo geo[SH_SHARDS];
    char name[KVI__SH_MAX_NAME + 1];
    char path[KVI__SH_MAX_NAME + 16];
};

/* Appends undo records for len bytes at addr (inside the segment) before
 * the caller overwrites them. */
void kvi__sh_log(kvi__sh *s, struct sh_shard *sh, void *addr, size_t len);
/* Ends the operation: its writes are kept. */
void kvi__sh_commit(struct sh_shard *sh);
/* Locks a shard, rolling back a dead owner's operation first.
 * KVI_E_CORRUPT when it cannot be recovered. */
kvi_status kvi__sh_lock(kvi__sh *s, struct sh_shard *sh);
/* Records why a shard was found damaged (a string literal), rolls back
 * what the current operation of sh logged, and returns KVI_E_CORRUPT. */
kvi_status kvi__sh_fault(kvi__sh *s, struct sh_shard *sh, const char *why);
/* A batch's fetches may run in hardware transactions instead of taking
 * the shard locks (x86-64 with RTM, glibc): on by default; 0 turns it off
 * for the whole process (tests compare both paths). */
void kvi__sh_elide(int on);
/* Whether a batch will try them now (1), and how many committed so far. */
int kvi__sh_can_elide(void);
uint64_t kvi__sh_elided(void);
/* Processes registered now and alive (0 for a read-only look). */
uint64_t kvi__sh_attached(kvi__sh *s);
/* Largest entry (24 + key + value bytes) a shard can hold. */
uint64_t kvi__sh_max_entry(const kvi__sh *s);

#endif /* KVI_LOCAL_SHM_INTERNAL_H */
