/* Public ABI of the CdmUserMem native fault engine. Mirrored by interop/CdmUserMem.Interop/CdmEngine*.cs. */
#ifndef CDM_ENGINE_H
#define CDM_ENGINE_H
#include <stdint.h>

#define CDM_PAGE_SIZE 4096u
#define CDM_HOST_NODE 0
#define CDM_MAX_NODES 63

/* Error codes beyond negative errno values. */
#define CDM_E_NO_USERFAULTFD  (-10001) /* the userfaultfd syscall is missing or refused */
#define CDM_E_MISSING_FEATURE (-10002) /* userfaultfd lacks a feature we need (see missing_features) */
#define CDM_E_MAPPING_BUDGET  (-10003) /* the operation would exceed the mapping budget */

/* Engine mode bits reported at creation. */
#define CDM_MODE_USER_ONLY 1u /* UFFD_USER_MODE_ONLY: faults raised inside system calls return EFAULT */

/* Per-page migration outcomes. */
enum cdm_outcome {
    CDM_OUT_NONE = 0,
    CDM_OUT_MIGRATED = 1,
    CDM_OUT_ALREADY_THERE = 2,
    CDM_OUT_BUSY = 3,
    CDM_OUT_NO_CAPACITY = 4,
    CDM_OUT_PLACED = 5, /* never touched: its first touch will land on the target */
    CDM_OUT_MAPPING_BUDGET = 6,
    CDM_OUT_PENDING = 7, /* prepared, copy and commit still to come */
    CDM_OUT_FAILED = 8,  /* a system call failed; errno is in the commit's return value */
};

typedef struct cdm_engine cdm_engine;
typedef struct cdm_region cdm_region;

typedef struct cdm_stats {
    uint64_t faults_missing;        /* first-touch faults served */
    uint64_t faults_write_protect;  /* write faults on pages under migration */
    uint64_t pages_zero_filled_host;
    uint64_t pages_first_touch_device;
    uint64_t first_touch_fallbacks; /* device placement fell back to host (capacity or budget) */
    uint64_t pages_migrated;
    uint64_t migrations_aborted;    /* pages whose migration a writer disturbed */
    uint64_t budget_refusals;
    uint64_t mappings_in_use;
    uint64_t mapping_budget;
    uint64_t pages_read_ahead;      /* resolved ahead of a sequential first-touch stream */
} cdm_stats;

int cdm_engine_create(uint64_t mapping_budget, uint32_t copy_channels, cdm_engine **out, uint32_t *mode,
                      uint64_t *missing_features);
void cdm_engine_destroy(cdm_engine *e);
void cdm_engine_stats(cdm_engine *e, cdm_stats *out);

int cdm_node_add(cdm_engine *e, uint64_t capacity_bytes, int32_t *node, int32_t *pinned, int32_t *mlock_errno);
int cdm_node_usage(cdm_engine *e, int32_t node, uint64_t *used_frames, uint64_t *total_frames);

int cdm_region_create(cdm_engine *e, uint64_t size, int32_t placement, uint32_t fault_around,
                      uint32_t readahead_pages, cdm_region **out, uint64_t *base);
int cdm_region_destroy(cdm_region *r);
int cdm_region_populate(cdm_region *r, uint64_t first_page, uint64_t page_count);
int cdm_region_residency(cdm_region *r, uint64_t first_page, uint64_t page_count, int8_t *nodes);
uint64_t cdm_region_pieces(cdm_region *r);

/* Migrates one batch in a single call, so that no step a blocked writer may wait for ever waits on
 * the caller's runtime: claim + write-protect, copy on the copy channels, commit, then retry the pages
 * writers disturbed. Writes one outcome per page; returns 0 or a negative error. */
int cdm_migrate_batch(cdm_region *r, uint64_t first_page, uint64_t page_count, int32_t target,
                      uint32_t busy_retries, uint8_t *outcomes, uint64_t *bytes_copied);

/* The copy engine: cdm_copy splits large copies across the engine's channels. */
void cdm_copy(cdm_engine *e, void *dst, const void *src, uint64_t bytes);
void cdm_copy_block(void *dst, const void *src, uint64_t bytes);
int cdm_copy_isa(void); /* 2 AVX-512, 1 AVX2, 0 memcpy only */

uint32_t cdm_abi_sizeof_stats(void);
#endif
