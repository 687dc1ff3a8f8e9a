/* Engine internals shared by the native sources; not part of the ABI. */
#ifndef CDM_INTERNAL_H
#define CDM_INTERNAL_H
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include "cdm_engine.h"

#define PAGE CDM_PAGE_SIZE

/* Page-state word: [state:4][pad:4][node:8][pad:8][frame:40]. EMPTY words carry a placement node + 1
 * (0 = the region's default); all other states carry the node and frame that back the page now. */
enum page_state { PS_EMPTY = 0, PS_FAULTING = 1, PS_RESIDENT = 2, PS_MIGRATING = 3, PS_COMMITTING = 4,
                  PS_ABORTING = 5, PS_ABORTED = 6 };
#define PS_STATE(w) ((unsigned)((w) & 0xF))
#define PS_NODE(w) ((int)(((w) >> 8) & 0xFF))
#define PS_FRAME(w) ((uint64_t)((w) >> 24))
#define PS_MAKE(s, n, f) ((uint64_t)(s) | ((uint64_t)(n) << 8) | ((uint64_t)(f) << 24))
#define PS_WITH_STATE(w, s) (((w) & ~(uint64_t)0xF) | (uint64_t)(s))

typedef struct frame_pool {
    pthread_mutex_t lock;
    uint64_t *bitmap;     /* one bit a frame, set = used */
    uint64_t frames;
    uint64_t used;
    uint64_t cursor;      /* next-fit start */
} frame_pool;

typedef struct device_node {
    int fd;               /* memfd arena */
    uint8_t *view;        /* engine's own mapping of the arena, for copies and zeroing */
    uint64_t capacity;
    frame_pool pool;
    bool pinned;
} device_node;

struct cdm_region {
    cdm_engine *engine;
    uint8_t *base;
    uint64_t size;
    uint64_t pages;
    int host_fd;
    _Atomic uint64_t *pt; /* page-state table */
    int placement;
    uint32_t fault_around;
    uint32_t readahead;         /* pages resolved ahead of a sequential first-touch stream; 0 = off */
    pthread_mutex_t remap_lock; /* serialises remaps so piece counting sees a stable table */
    uint64_t pieces;            /* mappings of the region VA (runs of one backing), under remap_lock */
    _Atomic uint64_t device_pages;
    _Atomic uint64_t host_pages;
};

#define MAX_REGIONS 1024

/* Copy-channel threads that share one large copy with its caller. */
typedef struct copy_channels {
    pthread_mutex_t submit; /* one shared copy at a time */
    pthread_mutex_t lock;
    pthread_cond_t work;
    pthread_t *threads;
    uint32_t channels;      /* including the caller */
    bool stopping;
    uint64_t generation;
    uint8_t *dst;
    const uint8_t *src;
    uint64_t bytes, share, slices;
    _Atomic uint64_t next_slice, done_slices;
} copy_channels;

struct cdm_engine {
    int uffd;
    int stop_fd;
    uint32_t mode;
    pthread_t thread;
    bool thread_started;
    pthread_rwlock_t regions_lock;
    cdm_region *regions[MAX_REGIONS];
    int region_count;
    pthread_mutex_t nodes_lock;
    device_node nodes[CDM_MAX_NODES + 1];
    int node_count;            /* including the host node 0 */
    _Atomic uint64_t mappings_in_use;
    _Atomic uint64_t host_pages; /* host-resident pages over all regions */
    uint64_t mapping_budget;
    copy_channels copy;
    /* Sequential first-touch readahead, resolved on its own thread while the fault thread serves faults. */
    struct {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        pthread_t thread;
        bool stopping;
        cdm_region *region; /* NULL when no stream is active */
        uint64_t next, end; /* pages still to resolve ahead */
    } ahead;
    struct {
        _Atomic uint64_t faults_missing, faults_wp, zero_filled, first_touch_device, fallbacks,
            migrated, aborted, budget_refusals, readahead;
    } st;
};

/* One contiguous run of pages a migration copies; addresses are engine views, not the region. */
typedef struct cdm_run {
    uint64_t first_page, page_count;
    uint8_t *src_addr, *dst_addr; /* dst_addr is NULL for the host: copies there are pwrites to the memfd */
    uint64_t src_frame, dst_frame;
    int src_node, dst_node;
} cdm_run;

/* frames.c */
int pool_init(frame_pool *p, uint64_t frames);
void pool_destroy(frame_pool *p);
uint64_t pool_alloc(frame_pool *p, uint64_t want, uint64_t hint, uint64_t *got); /* returns start */
void pool_free(frame_pool *p, uint64_t start, uint64_t count);

/* copy.c */
int channels_start(copy_channels *c, uint32_t channels);
void channels_stop(copy_channels *c);
void channels_copy(copy_channels *c, void *dst, const void *src, uint64_t bytes);

/* uffd.c */
int uffd_open(uint32_t *mode, uint64_t *missing);
int uffd_register(int uffd, void *addr, uint64_t len);
int uffd_unregister(int uffd, void *addr, uint64_t len);
int uffd_zeropage(int uffd, void *addr, uint64_t len, uint64_t *done);
int uffd_write_protect(int uffd, void *addr, uint64_t len, bool protect, bool wake);
int uffd_wake(int uffd, void *addr, uint64_t len);

/* region.c */
uint64_t piece_key(const cdm_region *r, uint64_t page, uint64_t word);
int64_t pieces_delta(cdm_region *r, uint64_t first, uint64_t count, uint64_t new_key);
bool budget_take(cdm_engine *e, int64_t delta);
int map_backing(cdm_region *r, uint64_t first, uint64_t count, int node, uint64_t frame, bool populate);
cdm_region *engine_find_region(cdm_engine *e, uint64_t addr);

/* resolve.c */
void resolve_first_touch(cdm_region *r, uint64_t first, uint64_t count);
void handle_fault(cdm_engine *e, uint64_t addr, uint64_t flags);
void *fault_loop(void *arg);
void *readahead_loop(void *arg);
void readahead_forget(cdm_engine *e, cdm_region *r);

/* The piece key of a page backed by a device frame: two pages share a key exactly when one mapping of
 * that node's arena can cover both (same file, contiguous offsets). The host identity mapping is key 0. */
static inline uint64_t device_piece_key(int node, uint64_t frame, uint64_t page) {
    return ((uint64_t)node << 56) | ((frame - page) & ((1ull << 56) - 1));
}

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
#endif
