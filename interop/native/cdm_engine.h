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
#define CDM_E_NO_CAPACITY     (-10004) /* the device node has no free frames */
#define CDM_E_BUSY            (-10005)

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
} cdm_stats;

/* One contiguous run of pages a migration copies; addresses are engine views, not the region. */
typedef struct cdm_run {
    uint64_t first_page;
    uint64_t page_count;
    uint64_t src_addr;
    uint64_t dst_addr;
    uint64_t src_frame;
    uint64_t dst_frame;
    int32_t src_node;
    int32_t dst_node;
} cdm_run;

int cdm_engine_create(uint64_t mapping_budget, cdm_engine **out, uint32_t *mode, uint64_t *missing_features);
void cdm_engine_destroy(cdm_engine *e);
void cdm_engine_stats(cdm_engine *e, cdm_stats *out);

int cdm_node_add(cdm_engine *e, uint64_t capacity_bytes, int32_t *node, int32_t *pinned, int32_t *mlock_errno);
int cdm_node_usage(cdm_engine *e, int32_t node, uint64_t *used_frames, uint64_t *total_frames);

int cdm_region_create(cdm_engine *e, uint64_t size, int32_t placement, uint32_t fault_around,
                      cdm_region **out, uint64_t *base);
int cdm_region_destroy(cdm_region *r);
int cdm_region_populate(cdm_region *r, uint64_t first_page, uint64_t page_count);
int cdm_region_residency(cdm_region *r, uint64_t first_page, uint64_t page_count, int8_t *nodes);
uint64_t cdm_region_pieces(cdm_region *r);

/* Claims, allocates and write-protects up to page_count pages; returns pages processed or -errno. */
int64_t cdm_migrate_prepare(cdm_region *r, uint64_t first_page, uint64_t page_count, int32_t target,
                            cdm_run *runs, uint32_t max_runs, uint32_t *run_count, uint8_t *outcomes);
/* Commits copied runs; outcomes is indexed from first_page of the prepare call. */
int cdm_migrate_commit(cdm_region *r, uint64_t first_page, cdm_run *runs, uint32_t run_count, uint8_t *outcomes);

uint32_t cdm_abi_sizeof_stats(void);
uint32_t cdm_abi_sizeof_run(void);
#endif
