/* Public ABI of the CdmUserMem native fault engine. Mirrored by interop/CdmUserMem.Interop/CdmEngine*.cs;
 * InteropAbiTests compares every constant below with cdm_abi_describe(). */
#ifndef CDM_ENGINE_H
#define CDM_ENGINE_H
#include <stdint.h>

#define CDM_PAGE_SIZE 4096u
#define CDM_HOST_NODE 0
#define CDM_MAX_NODES 63   /* device nodes per engine (node ids 1..63) */
#define CDM_MAX_PINS 4095  /* nested pins per page */
#define CDM_MAX_PLANS 65535 /* distinct fallback orders per engine (the plan field of a page word is 16 bits) */
#define CDM_MAX_RULE 16777215 /* highest policy rule id (24 bits) */
#define CDM_MAX_GROUPS 256    /* accounting groups per engine, group 0 (none) included */

/* Error codes beyond negative errno values. */
#define CDM_E_NO_USERFAULTFD  (-10001) /* the userfaultfd syscall is missing or refused */
#define CDM_E_MISSING_FEATURE (-10002) /* userfaultfd lacks a feature we need (see missing_features) */
#define CDM_E_MAPPING_BUDGET  (-10003) /* the operation would exceed the mapping budget */
#define CDM_E_FORKED          (-10004) /* called in a child of fork(): the engine belongs to the parent */
#define CDM_E_NODE_LIMIT      (-10005) /* CDM_MAX_NODES device nodes exist already */
#define CDM_E_PINNED          (-10006) /* a page of the range is pinned (CDM_MAX_PINS reached on pin) */
#define CDM_E_PLAN_LIMIT      (-10007) /* CDM_MAX_PLANS fallback orders exist already */
#define CDM_E_NO_ROOM         (-10008) /* a drain found no node with room for some pages */

/* Engine creation flags. */
#define CDM_CREATE_USER_MODE_ONLY 1u /* ask for UFFD_USER_MODE_ONLY even when full mode is allowed */

/* Engine mode bits reported at creation. */
#define CDM_MODE_USER_ONLY 1u        /* UFFD_USER_MODE_ONLY: faults raised inside system calls return EFAULT */
#define CDM_MODE_DEV_USERFAULTFD 2u  /* the descriptor came from /dev/userfaultfd (USERFAULTFD_IOC_NEW) */
#define CDM_MODE_LOCKED 4u           /* arenas are mlocked, and so every region and staging area */

/* userfaultfd features the engine needs. */
#define CDM_UFFD_FEATURE_MOVE (1ull << 10)

/* Per-page migration outcomes. */
enum cdm_outcome {
    CDM_OUT_NONE = 0,
    CDM_OUT_MIGRATED = 1,
    CDM_OUT_ALREADY_THERE = 2,
    CDM_OUT_BUSY = 3,
    CDM_OUT_NO_CAPACITY = 4,
    CDM_OUT_PLACED = 5,         /* never touched: its first touch will land on the target */
    CDM_OUT_MAPPING_BUDGET = 6, /* no longer produced: migration creates no mappings */
    CDM_OUT_PENDING = 7,        /* internal: claimed, not yet decided */
    CDM_OUT_FAILED = 8,         /* a system call failed; the page stayed where it was */
    CDM_OUT_PINNED = 9,         /* the kernel or a Region.Pin lease holds the page: it was not touched */
    CDM_OUT_SHARED = 10,        /* shared copy-on-write with a forked child, and the sharing could not be broken */
};

/* How a page got where it is (cdm_region_explain). */
enum cdm_why {
    CDM_WHY_UNTOUCHED = 0,   /* not resident yet: its target and rule say where its first touch goes */
    CDM_WHY_TARGET = 1,      /* first touch, on the node its rule chose */
    CDM_WHY_FALLBACK = 2,    /* first touch: the target (and the nodes before this one in the order) had no room */
    CDM_WHY_LAST_RESORT = 3, /* first touch: no node of the order had room; the host serves it */
    CDM_WHY_MIGRATED = 4,    /* an explicit migration */
    CDM_WHY_REBALANCED = 5,  /* a rebalance applying its rule */
    CDM_WHY_DRAINED = 6,     /* moved off a node being unplugged */
    CDM_WHY_DEMOTED = 7,
    CDM_WHY_COMPACTED = 8,   /* moved off frames a contiguous reservation needed */
    CDM_WHY_GROUP_LIMIT = 9, /* first touch: the target had room, but the region's group was at its limit there */
    CDM_WHY_CPU_FAULT = 10,  /* brought back from a private node because the CPU touched it */     /* demoted by pressure: the least recently placed pages of a node over its high watermark */
};

/* System calls fault injection can fail (cdm_inject). */
enum cdm_op {
    CDM_OP_MOVE = 0,     /* UFFDIO_MOVE */
    CDM_OP_COPY = 1,     /* UFFDIO_COPY */
    CDM_OP_ZEROPAGE = 2, /* UFFDIO_ZEROPAGE */
    CDM_OP_WAKE = 3,     /* UFFDIO_WAKE */
    CDM_OP_REGISTER = 4, /* UFFDIO_REGISTER */
    CDM_OP_MMAP = 5,     /* mmap of regions, arenas and tables */
    CDM_OP_MADVISE = 6,  /* madvise (staging release, arena setup) */
    CDM_OP_POLL = 7,     /* poll in the fault loop */
    CDM_OP_READ = 8,     /* read of the userfaultfd */
    CDM_OP_MLOCK = 9,    /* mlock / mlock2 */
    CDM_OP_COUNT = 10,
};

/* Latency histograms the engine records (cdm_latency_snapshot). */
enum cdm_latency {
    CDM_LAT_FAULT = 0,          /* fault service: from reading a fault that resolves pages (first touch,
                                 * refill) to waking its toucher */
    CDM_LAT_MIGRATE_PAGE = 1,   /* one cdm_migrate_batch call of 1 page */
    CDM_LAT_MIGRATE_64K = 2,    /* ... of 2 to 16 pages */
    CDM_LAT_MIGRATE_2M = 3,     /* ... of 17 to 512 pages */
    CDM_LAT_MIGRATE_LARGER = 4, /* ... of more than 512 pages */
    CDM_LAT_COUNT = 5,
};

/* Buckets of a latency histogram, in nanoseconds: bucket i < 8 holds exactly i; above, each power of
 * two is split in 8 (bucket i holds [(8 + i % 8) << (i / 8 - 1), (9 + i % 8) << (i / 8 - 1)) ), so a
 * value is known to within 12.5 %. The last bucket also holds everything longer. */
#define CDM_LAT_SUB_BUCKETS 8
#define CDM_LAT_BUCKETS 320

typedef struct cdm_engine cdm_engine;
typedef struct cdm_region cdm_region;
typedef struct cdm_reservation cdm_reservation;
typedef struct cdm_extent cdm_extent;

typedef struct cdm_stats {
    uint64_t faults_missing;        /* first-touch faults served */
    uint64_t faults_on_migrating;   /* faults that waited for a page under migration */
    uint64_t pages_zero_filled_host;
    uint64_t pages_first_touch_device;
    uint64_t first_touch_fallbacks; /* device placement fell back to host (capacity) */
    uint64_t pages_migrated;
    uint64_t migrations_aborted;    /* page migrations undone after a system call failed */
    uint64_t budget_refusals;
    uint64_t mappings_in_use;
    uint64_t mapping_budget;
    uint64_t pages_read_ahead;      /* resolved ahead of a sequential first-touch stream */
    uint64_t pages_refused_pinned;  /* migrations the kernel or a pin lease refused */
    uint64_t pages_refused_shared;  /* migrations refused: shared copy-on-write with a child */
    uint64_t pages_refilled;        /* resident pages the user discarded (madvise) and touched again */
    uint64_t fill_errors;           /* first-touch fills the kernel refused, retried later */
    uint64_t fault_loop_errors;     /* poll/read errors the fault thread survived */
    uint64_t bytes_copied;
    uint64_t migrate_ns_detach;     /* time in each step of migrations, summed */
    uint64_t migrate_ns_copy;
    uint64_t migrate_ns_attach;
    uint64_t migrate_ns_release;
    uint64_t pages_unshared;        /* copy-on-write sharing with a forked child broken so the page could move */
    uint64_t pages_demoted;         /* moved off nodes over their high watermark */
    uint64_t pages_compacted;       /* moved off frames contiguous reservations needed */
    uint64_t private_faults;        /* CPU touches of pages on private nodes, each bringing its page back */
} cdm_stats;

int cdm_engine_create(uint64_t mapping_budget, uint32_t copy_channels, uint32_t flags, cdm_engine **out,
                      uint32_t *mode, uint64_t *missing_features);
void cdm_engine_destroy(cdm_engine *e);
void cdm_engine_stats(cdm_engine *e, cdm_stats *out);

/* Turns latency recording on (the default) or off; costs two clock reads per fault event and per batch. */
void cdm_latency_enable(cdm_engine *e, int32_t on);
/* Copies histogram `which` (CDM_LAT_BUCKETS counts) and its sum of nanoseconds; lock-free, never waits. */
int cdm_latency_snapshot(cdm_engine *e, int32_t which, uint64_t *buckets, uint32_t bucket_count, uint64_t *sum_ns);

/* Test-only fault injection: the calls skip+1 .. skip+times of op fail with -err (err > 0). */
int cdm_inject(cdm_engine *e, int32_t op, int32_t err, uint32_t skip, uint32_t times);

int cdm_node_add(cdm_engine *e, uint64_t capacity_bytes, int32_t *node, int32_t *pinned, int32_t *mlock_errno);
int cdm_node_usage(cdm_engine *e, int32_t node, uint64_t *used_frames, uint64_t *total_frames);

/* Reserves frames on a device node for one migration (all or nothing); migrations passed the
 * reservation draw from it first. Release returns what is left. */
int cdm_reserve(cdm_engine *e, int32_t node, uint64_t frames, cdm_reservation **out);
void cdm_reservation_release(cdm_reservation *res);

int cdm_region_create(cdm_engine *e, uint64_t size, int32_t placement, uint32_t fault_around,
                      uint32_t readahead_pages, cdm_region **out, uint64_t *base);
int cdm_region_destroy(cdm_region *r);
int cdm_region_populate(cdm_region *r, uint64_t first_page, uint64_t page_count);
int cdm_region_pin(cdm_region *r, uint64_t first_page, uint64_t page_count);
int cdm_region_unpin(cdm_region *r, uint64_t first_page, uint64_t page_count);
int cdm_region_residency(cdm_region *r, uint64_t first_page, uint64_t page_count, int8_t *nodes);

/* Migrates one batch in a single call, so that no step a waiting accessor depends on ever waits on the
 * caller's runtime: claim, detach (UFFDIO_MOVE out), copy on the copy channels, attach, wake, release;
 * then retry busy pages. Writes one outcome per page; returns 0 or a negative error. */
int cdm_migrate_batch(cdm_region *r, uint64_t first_page, uint64_t page_count, int32_t target,
                      uint32_t busy_retries, cdm_reservation *reservation, uint8_t *outcomes);

/* The copy engine: cdm_copy splits large copies across the engine's channels. */
void cdm_copy(cdm_engine *e, void *dst, const void *src, uint64_t bytes);
void cdm_copy_block(void *dst, const void *src, uint64_t bytes);
int cdm_copy_isa(void); /* 2 AVX-512, 1 AVX2, 0 memcpy only */

/* Placement policies. A plan is a fallback order (nodes tried after a first touch's target, in order; the
 * host serves whatever none has room for); interned, so equal orders share an id. */
int cdm_plan_create(cdm_engine *e, const int8_t *nodes, uint32_t count, uint32_t *plan);
/* The fallback order of pages still on the region's defaults; call before the region is used. */
int cdm_region_set_default_plan(cdm_region *r, uint32_t plan);
/* Untouched pages of the range get target pattern[page % pattern_len], the plan and the rule; resident
 * pages are left where they are (a rebalance moves them). */
int cdm_region_set_policy(cdm_region *r, uint64_t first_page, uint64_t page_count, const int8_t *pattern,
                          uint32_t pattern_len, uint32_t plan, uint32_t rule);
/* One page: its state (enum page_state), its node (the target while untouched), its rule and why. */
int cdm_region_explain(cdm_region *r, uint64_t page, int32_t *state, int32_t *node, uint32_t *rule, int32_t *why);
/* As cdm_migrate_batch, recording why (CDM_WHY_MIGRATED or CDM_WHY_REBALANCED) and rule on each page moved. */
int cdm_migrate_batch_why(cdm_region *r, uint64_t first_page, uint64_t page_count, int32_t target, uint32_t busy_retries,
                          cdm_reservation *reservation, int32_t why, uint32_t rule, uint8_t *outcomes);

/* Hot-unplug: takes the node offline (nothing new lands there), migrates every page of every region off it
 * to the first node of order with room, and on success discards the arena (the node stays offline). When
 * pages cannot move (pinned: CDM_E_PINNED; no room: CDM_E_NO_ROOM) the node comes back online with what is
 * left, *left_pages says how many and *blocked_addr the first blocked page's address. A node holding
 * contiguous reservations is refused at once (-EBUSY, *left_pages their frames). */
int cdm_node_drain(cdm_engine *e, int32_t node, const int8_t *order, uint32_t order_len, uint64_t *left_pages,
                   uint64_t *blocked_addr);

/* Pressure: while more than high_frames of the node are in use (or an allocation there comes up short), a
 * background thread demotes its least recently placed unpinned pages to the first node of order with room,
 * until low_frames are in use. high_frames 0 turns it off. */
int cdm_node_set_pressure(cdm_engine *e, int32_t node, uint64_t high_frames, uint64_t low_frames, const int8_t *order,
                          uint32_t order_len);

/* Contiguous reservations (CMA-like): frames [*first_frame, +frames) of a device node for explicit use,
 * never used by placement. When no window of free frames exists, the window with the fewest movable pages
 * is compacted: its pages move to other frames of the node, else to the first node of order with room. At
 * address 0 the extent is used where it lies in the arena (*mapped); otherwise its frames are moved into a
 * new mapping at exactly that address. Pinned pages in every window: CDM_E_PINNED, with up to
 * *blocked_count (in: room in blocked) of their addresses. No window at all (other extents): -ENOSPC. */
int cdm_extent_reserve(cdm_engine *e, int32_t node, uint64_t frames, const int8_t *order, uint32_t order_len, uint64_t address,
                       cdm_extent **out, uint64_t *first_frame, uint64_t *mapped, uint64_t *blocked, uint32_t *blocked_count);
void cdm_extent_release(cdm_extent *x);

/* Accounting groups (memcg-like): exact usage per node of the regions in a group, and per-device-node limits;
 * placements over a limit fall back (first touch) or report CDM_OUT_NO_CAPACITY (migration). */
int cdm_group_create(cdm_engine *e, uint32_t *group);
int cdm_group_set_limit(cdm_engine *e, uint32_t group, int32_t node, uint64_t frames); /* UINT64_MAX: none */
int cdm_group_usage(cdm_engine *e, uint32_t group, int32_t node, uint64_t *frames);
/* Puts a region that holds no page yet into a group (-EBUSY once it holds pages). */
int cdm_region_set_group(cdm_region *r, uint32_t group);

/* Makes a device node private (device-private memory): its pages are not mapped in regions; a CPU touch of
 * one brings it back to the first node of order with room (the host serves the rest). First touches never
 * land there; only migrations put pages there. Call before any page lands on the node; calling it again
 * for a private node only changes its order. */
int cdm_node_make_private(cdm_engine *e, int32_t node, const int8_t *order, uint32_t order_len);

/* Demotes the node's frames least recently placed unpinned pages now, to the first node of order with room
 * (proactive demotion, as memory.reclaim reclaims on request); *demoted says how many moved. */
int cdm_node_demote(cdm_engine *e, int32_t node, uint64_t frames, const int8_t *order, uint32_t order_len, uint64_t *demoted);

uint32_t cdm_abi_sizeof_stats(void);
/* "NAME=VALUE;..." for every constant above, for the ABI test. */
const char *cdm_abi_describe(void);
#endif
