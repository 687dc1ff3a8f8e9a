/* Engine internals shared by the native sources; not part of the ABI. */
#ifndef CDM_INTERNAL_H
#define CDM_INTERNAL_H
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "cdm_engine.h"

#define PAGE CDM_PAGE_SIZE

/* Debian's headers predate UFFDIO_MOVE (Linux 6.8). */
#ifndef UFFDIO_MOVE
struct uffdio_move {
    __u64 dst, src, len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
    __u64 mode;
    __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif

/* Page-state word: [state:4][pins:12][node:8][frame:40]. EMPTY words carry a placement node + 1
 * (0 = the region's default); FAULTING words the node being filled; the others the node and frame
 * that back the page. Pins (Region.Pin leases) keep a resident page where it is. */
enum page_state { PS_EMPTY = 0, PS_FAULTING = 1, PS_RESIDENT = 2, PS_MIGRATING = 3 };
#define PS_STATE(w) ((unsigned)((w) & 0xF))
#define PS_PINS(w) ((unsigned)(((w) >> 4) & 0xFFF))
#define PS_NODE(w) ((int)(((w) >> 16) & 0xFF))
#define PS_FRAME(w) ((uint64_t)((w) >> 24))
#define PS_MAKE(s, n, f) ((uint64_t)(s) | ((uint64_t)(n) << 16) | ((uint64_t)(f) << 24))
#define PS_WITH_STATE(w, s) (((w) & ~(uint64_t)0xF) | (uint64_t)(s))
#define PS_PIN_ONE ((uint64_t)1 << 4)
/* An EMPTY word's frame field names how its first touch is placed: [rule:24][plan:16]. Plan 0 and node 0
 * stand for the region's defaults; the rule is the caller's name for the policy, kept for explanations. */
#define EMPTY_PLAN(w) ((uint32_t)(PS_FRAME(w) & 0xFFFF))
#define EMPTY_RULE(w) ((uint32_t)(PS_FRAME(w) >> 16))
#define PS_EMPTY_WORD(node_plus1, plan, rule) PS_MAKE(PS_EMPTY, (node_plus1), ((uint64_t)(rule) << 16) | (uint64_t)(plan))
/* A page's placement record: [rule:24][why:8] (enum cdm_why). */
#define WHY_MAKE(why, rule) ((uint32_t)(why) | ((uint32_t)(rule) << 8))

typedef struct frame_pool {
    pthread_mutex_t lock;
    uint64_t *bitmap;  /* one bit a frame, set = used */
    uint64_t frames;
    uint64_t used;
    uint64_t reserved; /* free frames promised to reservations */
    uint64_t cursor;   /* next-fit start */
    bool offline;      /* being drained or unplugged: nothing new is placed here */
    uint64_t high;     /* pressure: above this many frames in use, or when an allocation comes up short, */
    struct cdm_engine *kick; /* ... kick this engine's demotion thread (0 / NULL: no pressure) */
    /* Compaction: frames of [hold_start, +hold_count) stay taken when freed (held_map), for an extent. */
    _Atomic uint64_t hold_start, hold_count;
    uint64_t held;
    uint64_t *held_map;
    uint64_t extent_frames; /* frames of this pool in contiguous extents */
} frame_pool;

static inline bool pool_in_hold(frame_pool *p, uint64_t frame) {
    return frame - atomic_load_explicit(&p->hold_start, memory_order_relaxed) <
           atomic_load_explicit(&p->hold_count, memory_order_relaxed);
}

/* A fallback order: the nodes a first touch tries after its target, nearest first. */
typedef struct placement_plan {
    uint32_t count;
    int8_t nodes[CDM_MAX_NODES + 1];
} placement_plan;

struct cdm_reservation {
    cdm_engine *engine;
    int node;
    _Atomic uint64_t left;
};

/* A device node's arena: anonymous private memory, populated at creation. A free frame's slot always
 * holds a page; a frame in use lives in a region (its slot is a hole) or is being copied. */
typedef struct device_node {
    uint8_t *arena;
    uint64_t capacity;
    frame_pool pool;
    bool pinned;
    /* Device-private (the kernel's MEMORY_DEVICE_PRIVATE): its pages are never mapped in regions; a CPU touch
     * brings one back to the first node of back_order with room (the host last). Set before any page lands. */
    bool private_node;
    uint32_t back_len;
    int8_t back_order[CDM_MAX_NODES + 1];
    /* Pressure, under engine.pressure.lock: demote down to low frames, to the first of order with room. */
    uint64_t low;
    uint32_t order_len;
    int8_t order[CDM_MAX_NODES + 1];
} device_node;

struct cdm_region {
    cdm_engine *engine;
    uint8_t *base;
    uint64_t size;
    uint64_t pages;
    _Atomic uint64_t *pt; /* page-state table */
    _Atomic uint32_t *why; /* per page: how it got where it is (WHY_MAKE); after pt in the same mapping */
    _Atomic uint32_t *stamp; /* per page: the engine's placement clock when it was placed; after why */
    int placement;
    _Atomic uint32_t plan; /* fallback order of pages whose EMPTY word names plan 0 */
    uint32_t group;        /* accounting group, 0 for none; set before the first page is placed */
    uint32_t fault_around;
    uint32_t readahead;   /* pages resolved ahead of a sequential first-touch stream; 0 = off */
    _Atomic int refs;     /* fault thread, readahead: destroy waits until none is inside */
    bool dying;           /* set under ahead.lock: readahead must not adopt it any more */
    _Atomic uint64_t device_pages;
    _Atomic uint64_t host_pages;
};

/* One copy shared by a caller and the channel threads; lives on the caller's stack. */
typedef struct copy_job {
    uint8_t *dst;
    const uint8_t *src;
    uint64_t bytes, share, slices;
    _Atomic uint64_t next_slice, done_slices;
    int users; /* channel threads inside the job, under copy_channels.lock */
} copy_job;

typedef struct copy_channels {
    pthread_mutex_t submit; /* one shared copy at a time */
    pthread_mutex_t lock;
    pthread_cond_t work, left;
    pthread_t *threads;
    uint32_t channels; /* including the caller */
    bool stopping;
    uint64_t generation;
    copy_job *job;     /* NULL once its caller has collected every slice */
} copy_channels;

/* An accounting group: pages (frames) its regions hold on each node, and per-node limits (UINT64_MAX: none). */
typedef struct acct_group {
    _Atomic uint64_t used[CDM_MAX_NODES + 1];
    _Atomic uint64_t limit[CDM_MAX_NODES + 1];
} acct_group;

/* Test-only fault injection: a countdown per system call. */
typedef struct inject_slot {
    _Atomic uint32_t skip, times;
    int err;
} inject_slot;

/* First touches the kernel refused to fill, retried by the fault thread after a pause. */
#define RETRY_SLOTS 64
#define SPARE_RANGES 256

struct cdm_engine {
    int uffd;
    int stop_fd;
    int pagemap_fd;
    uint32_t mode;
    bool locked;
    uint64_t generation; /* fork_generation when the engine was made */
    pthread_t thread;
    bool thread_started;
    pthread_rwlock_t regions_lock; /* held only for table changes and lookups, never across work */
    cdm_region **regions;          /* sorted by base */
    int region_count, region_capacity;
    pthread_mutex_t nodes_lock;
    pthread_mutex_t compaction_lock; /* one contiguous reservation at a time */
    device_node nodes[CDM_MAX_NODES + 1];
    _Atomic int node_count; /* including the host node 0 */
    placement_plan plans[CDM_MAX_PLANS]; /* interned under nodes_lock; plan 0 is the host alone */
    _Atomic uint32_t plan_count;
    _Atomic uint32_t placement_clock;
    acct_group groups[CDM_MAX_GROUPS]; /* 0 is no group */
    uint32_t group_count;              /* under nodes_lock */ /* ticks once a page placed: "least recently placed" is the smallest stamp */
    struct {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        pthread_t thread;
        bool started, stopping, kicked;
    } pressure;
    uint8_t *staging;       /* slots that hold detached host pages while they are copied */
    uint64_t staging_slots;
    frame_pool staging_pool;
    /* Host pages left in staging by host-to-device moves, kept as destinations of device-to-host
     * copies: moving one into a region costs 0.1 us, a fresh page by UFFDIO_COPY 1-1.4 us (measured). */
    struct {
        pthread_mutex_t lock;
        uint64_t start[SPARE_RANGES], count[SPARE_RANGES];
        uint32_t ranges;
        uint64_t pages, cap;
    } spares;
    uint8_t *zeros;         /* ZERO_CHUNK bytes of zeros: the source of first-touch fills */
    _Atomic uint64_t mappings_in_use;
    _Atomic uint64_t host_pages;
    uint64_t mapping_budget;
    copy_channels copy;
    struct {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        pthread_t thread;
        bool stopping;
        cdm_region *region; /* NULL when no stream is active; holds a reference */
        uint64_t next, end;
    } ahead;
    struct {
        uint64_t addr[RETRY_SLOTS];
        uint32_t count;
    } retry; /* fault thread only */
    _Atomic bool inject_armed;
    inject_slot inject[CDM_OP_COUNT];
    struct {
        _Atomic uint64_t faults_missing, faults_on_migrating, zero_filled, first_touch_device, fallbacks,
            migrated, aborted, budget_refusals, readahead, refused_pinned, refused_shared, refilled,
            fill_errors, loop_errors, bytes_copied, ns_detach, ns_copy, ns_attach, ns_release, unshared, demoted, compacted, private_faults;
    } st;
    _Atomic bool record_latency;
    struct {
        _Atomic uint64_t buckets[CDM_LAT_BUCKETS];
        _Atomic uint64_t sum_ns;
    } latency[CDM_LAT_COUNT];
};

#define ZERO_CHUNK_PAGES 64u

/* inject.c */
int inject_check(cdm_engine *e, int op);

/* Set on the engine's own threads (fault, readahead, copy channels): a preloaded malloc serves them
 * from memory that never faults. */
extern __thread int cdm_engine_thread __attribute__((tls_model("initial-exec")));

struct cdm_heap;
/* Frees p if it lies in the heap's span or extent area: 1 freed, 0 not this heap's area, < 0 refused. */
int heap_free_owned(struct cdm_heap *h, void *p);
void heap_free_failed(int rc, void *p) __attribute__((noreturn));

/* latency.c */
void latency_record(cdm_engine *e, int which, uint64_t ns);
int latency_of_batch(uint64_t pages);

/* frames.c */
int pool_init(frame_pool *p, uint64_t frames);
void pool_destroy(frame_pool *p);
uint64_t pool_alloc(frame_pool *p, uint64_t want, uint64_t hint, uint64_t *got, cdm_reservation *res);
void pool_free(frame_pool *p, uint64_t start, uint64_t count);
/* Frees frames drawn from a reservation (or not, when res is NULL) back into it, unused. */
void pool_give_back(frame_pool *p, uint64_t start, uint64_t count, cdm_reservation *res);

/* copy.c */
int channels_start(copy_channels *c, uint32_t channels);
void channels_stop(copy_channels *c);
void channels_copy(copy_channels *c, void *dst, const void *src, uint64_t bytes);

/* uffd.c: each returns 0 or -errno; *done says how many bytes the kernel handled before an error. */
int uffd_open(uint32_t flags, uint32_t *mode, uint64_t *missing);
int uffd_register(cdm_engine *e, void *addr, uint64_t len);
int uffd_unregister(cdm_engine *e, void *addr, uint64_t len);
int uffd_zeropage(cdm_engine *e, void *addr, uint64_t len, bool wake, uint64_t *done);
int uffd_copy(cdm_engine *e, void *dst, const void *src, uint64_t len, bool wake, uint64_t *done);
int uffd_move(cdm_engine *e, void *dst, void *src, uint64_t len, bool wake, uint64_t *done);
int uffd_wake(cdm_engine *e, void *addr, uint64_t len);
int sys_madvise(cdm_engine *e, void *addr, uint64_t len, int advice);
void *sys_mmap(cdm_engine *e, uint64_t len, int extra_flags);
int sys_lock_on_fault(cdm_engine *e, void *addr, uint64_t len);
bool pagemap_read(cdm_engine *e, const void *addr, uint64_t *entry);

/* region.c */
bool budget_take(cdm_engine *e, int64_t delta);
cdm_region *region_get(cdm_engine *e, uint64_t addr); /* takes a reference */
void region_put(cdm_region *r);
/* Every region of the engine, each with a reference, for a sweep that must not hold regions_lock. */
typedef struct regions_ref {
    cdm_region **all;
    int count;
} regions_ref;
int regions_take(cdm_engine *e, regions_ref *out); /* 0, or -ENOMEM with nothing taken */
void regions_put(regions_ref *refs);

static inline bool node_private(const cdm_engine *e, int node) { return node != CDM_HOST_NODE && e->nodes[node].private_node; }

/* The node an untouched page's first touch targets. */
static inline int empty_target(const cdm_region *r, uint64_t w) {
    int n = PS_NODE(w);
    return n ? n - 1 : r->placement;
}

/* policy.c */
const placement_plan *plan_of(const cdm_region *r, uint64_t empty_word);
/* Whether order lists 1 to CDM_MAX_NODES + 1 existing nodes, none of them node. */
bool order_valid(cdm_engine *e, const int8_t *order, uint32_t order_len, int node);
static inline void why_store(cdm_region *r, uint64_t page, uint32_t why) {
    atomic_store_explicit(&r->why[page], why, memory_order_relaxed);
    atomic_store_explicit(&r->stamp[page], atomic_fetch_add_explicit(&r->engine->placement_clock, 1, memory_order_relaxed),
                          memory_order_relaxed);
}

/* group.c: frames of a region's pages, charged to its group (limit permitting) before they are taken. */
uint64_t group_charge(cdm_region *r, int node, uint64_t want, bool *limited);
void group_uncharge(cdm_region *r, int node, uint64_t n);
uint64_t region_frames_alloc(cdm_region *r, int node, uint64_t want, uint64_t hint, uint64_t *got, cdm_reservation *res, bool *limited);
void region_frames_free(cdm_region *r, int node, uint64_t start, uint64_t count, cdm_reservation *res);

/* discard.c: as MADV_DONTNEED over a region's pages, giving device frames back: the pages become untouched,
 * on the region's defaults. Falls back to plain madvise outside regions. */
int region_discard(cdm_engine *e, uint8_t *addr, uint64_t len);

/* private.c */
/* Brings page p, resident on a private node (word w), back into the region because the CPU touched it:
 * 1 done (the caller wakes the page), 0 busy (whoever holds it wakes the toucher), < 0 failed (retry later). */
int private_bring_back(cdm_region *r, uint64_t page, uint64_t w);

/* pressure.c */
void pressure_kick(cdm_engine *e);
void pressure_stop(cdm_engine *e);

/* migrate.c */
/* from >= 0: only pages resident on that node move; the others report CDM_OUT_ALREADY_THERE. */
int migrate_batch(cdm_region *r, uint64_t first, uint64_t count, int32_t target, int32_t from, uint32_t busy_retries,
                  cdm_reservation *res, uint32_t why, uint8_t *outcomes);

/* resolve.c */
int fill_zero(cdm_engine *e, uint8_t *addr, uint64_t pages, bool writable, bool wake, uint64_t *filled);
/* Resolves untouched pages without waking anyone: the caller wakes the range once it is done with the
 * region, so that no toucher it releases finds the region still referenced. */
int resolve_first_touch(cdm_region *r, uint64_t first, uint64_t count, bool writable);
void *fault_loop(void *arg);
void *readahead_loop(void *arg);
void readahead_forget(cdm_engine *e, cdm_region *r);

/* staging.c */
int staging_discard(cdm_engine *e, uint64_t slot, uint64_t count);
int staging_empty(cdm_engine *e, uint64_t slot, uint64_t count);
int discard_pages(cdm_engine *e, uint8_t *addr, uint64_t len);
void staging_recycle(cdm_engine *e, uint64_t slot, uint64_t count);
uint64_t spare_take(cdm_engine *e, uint64_t want, uint64_t *slot);

/* migrate.c */
extern _Atomic uint64_t fork_generation;
void fork_lock_init(void);
bool engine_forked(const cdm_engine *e);

static inline uint64_t region_word(cdm_region *r, uint64_t page) {
    return atomic_load_explicit(&r->pt[page], memory_order_acquire);
}
static inline bool region_cas(cdm_region *r, uint64_t page, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_strong_explicit(&r->pt[page], expected, desired, memory_order_acq_rel,
                                                   memory_order_acquire);
}
static inline void region_store(cdm_region *r, uint64_t page, uint64_t w) {
    atomic_store_explicit(&r->pt[page], w, memory_order_release);
}
static inline uint8_t *frame_addr(cdm_engine *e, int node, uint64_t frame) {
    return e->nodes[node].arena + frame * PAGE;
}
static inline uint64_t now_ns(void);
#include <time.h>
static inline uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}
#endif
