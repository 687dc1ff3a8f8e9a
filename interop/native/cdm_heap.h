/* CdmUserMem heaps: a malloc family whose memory comes only from CdmUserMem regions, so it is faulted
 * in by the engine, placed on the heap's node, and can migrate between nodes under the same pointers.
 *
 * Small sizes (up to CDM_HEAP_SMALL_MAX) come from 64 KiB spans owned by one thread each: the allocating
 * thread pops a free list or bumps a pointer, no lock and no atomic; a free from another thread is one
 * atomic push onto the span's remote list. Larger sizes are page-aligned extents of their own, so they
 * migrate independently; from CDM_HEAP_HUGE_DEFAULT bytes each is a region of its own.
 *
 * Freed memory: spans and extents stay mapped for reuse until the heap holds more than retention_bytes
 * of free memory; beyond it they are discarded (as MADV_DONTNEED, device frames going back to their node:
 * the next touch is a first touch on the heap's placement) but keep their address range for reuse;
 * calloc zeroes everything but address space never handed out. Huge allocations are unmapped when freed.
 * Alignment: spans start on 64 KiB boundaries and the extent area on a 2 MiB one; any power-of-two
 * alignment is honoured on absolute addresses.
 *
 * Errors: a pointer that no heap allocated, a pointer into the middle of an extent, and a second free of
 * an extent are always detected; with CDM_HEAP_CHECKED, a second free of a small block and a pointer
 * into the middle of one are too. cdm_heap_free reports them on stderr and aborts, as glibc does;
 * cdm_heap_free_checked returns the error instead. */
#ifndef CDM_HEAP_H
#define CDM_HEAP_H
#include <stddef.h>
#include <stdint.h>
#include "cdm_engine.h"

#define CDM_HEAP_SMALL_MAX 16384u
#define CDM_HEAP_CLASSES 37
#define CDM_HEAP_HUGE_DEFAULT (64ull << 20)
#define CDM_HEAP_MAX 16 /* heaps alive at once per process */

/* Heap flags. */
#define CDM_HEAP_CHECKED 1u /* track every small block: double and misplaced frees are detected */

/* Errors of cdm_heap_free_checked and friends. */
#define CDM_E_HEAP_FOREIGN (-10007)     /* the pointer is not inside any heap */
#define CDM_E_HEAP_DOUBLE_FREE (-10008) /* the block or extent is not allocated */
#define CDM_E_HEAP_NOT_BLOCK (-10009)   /* the pointer is inside a heap but not where an allocation starts */
#define CDM_E_HEAP_LIMIT (-10010)       /* CDM_HEAP_MAX heaps exist already */

typedef struct cdm_heap cdm_heap;

typedef struct cdm_heap_options {
    int32_t placement;        /* node where first touches land; the engine falls back to the host when full */
    uint32_t flags;           /* CDM_HEAP_CHECKED */
    uint64_t small_reserve;   /* address space for spans (0: 16 GiB) */
    uint64_t large_reserve;   /* address space for extents (0: 64 GiB) */
    uint64_t retention_bytes; /* free memory kept populated for reuse (0: 256 MiB) */
    uint64_t huge_threshold;  /* allocations from this size get a region of their own (0: 64 MiB) */
} cdm_heap_options;

typedef struct cdm_heap_stats {
    uint64_t live_bytes;   /* allocated and not freed (small blocks count their class size) */
    uint64_t peak_bytes;   /* the most bytes held in spans, extents and huge regions at once */
    uint64_t small_bytes;  /* live bytes in small blocks */
    uint64_t large_bytes;  /* live bytes in extents (whole pages) */
    uint64_t huge_bytes;   /* live bytes in huge regions */
    uint64_t spans_in_use;
    uint64_t free_retained_bytes;  /* freed memory kept populated for reuse */
    uint64_t discarded_bytes;      /* freed memory given back beyond the retention */
    uint64_t allocations_by_class[CDM_HEAP_CLASSES]; /* small allocations made, by size class */
    uint64_t large_allocations, huge_allocations;
} cdm_heap_stats;

/* A page range of a heap's memory, as a region and pages of it. */
typedef struct cdm_heap_range {
    cdm_region *region; /* NULL when the heap is on plain memory (no engine) */
    uint8_t *address;   /* where first_page is mapped */
    uint64_t first_page, page_count;
} cdm_heap_range;

/* engine may be NULL: the heap then lives on plain anonymous memory (the preloaded malloc uses one for
 * the engine's own threads, whose memory must never fault). */
int cdm_heap_create(cdm_engine *engine, const cdm_heap_options *options, cdm_heap **out);
/* Unmaps everything; pointers into the heap become foreign. */
int cdm_heap_destroy(cdm_heap *heap);

void *cdm_heap_malloc(cdm_heap *heap, size_t bytes);
void *cdm_heap_calloc(cdm_heap *heap, size_t count, size_t size);
void *cdm_heap_realloc(cdm_heap *heap, void *p, size_t bytes);
void cdm_heap_free(cdm_heap *heap, void *p);
void *cdm_heap_aligned_alloc(cdm_heap *heap, size_t alignment, size_t bytes);
int cdm_heap_posix_memalign(cdm_heap *heap, void **out, size_t alignment, size_t bytes);
size_t cdm_heap_malloc_usable_size(cdm_heap *heap, const void *p);
/* As cdm_heap_free, but returns 0 or a CDM_E_HEAP_* error instead of aborting; frees nothing on error. */
int cdm_heap_free_checked(cdm_heap *heap, void *p);

/* As cdm_heap_realloc, but returns 0 or a CDM_E_HEAP_* error (or -ENOMEM) instead of aborting; *out is
 * the new pointer (NULL after a free of size 0). On an error nothing changed. */
int cdm_heap_realloc_checked(cdm_heap *heap, void *p, size_t bytes, void **out);
/* While held, no huge allocation is unmapped (its free waits): for callers that use the region pointers
 * cdm_heap_locate, cdm_heap_page_of and cdm_heap_ranges return. Never free while holding. */
void cdm_heap_hold(cdm_heap *heap);
void cdm_heap_unhold(cdm_heap *heap);

/* The heap holding p, or NULL. */
cdm_heap *cdm_heap_of(const void *p);
/* The pages an allocation covers (a small block: its span's pages). */
int cdm_heap_locate(cdm_heap *heap, const void *p, cdm_heap_range *range);
/* The page holding any address of the heap's memory, allocated or not (page_count 1). */
int cdm_heap_page_of(cdm_heap *heap, const void *p, cdm_heap_range *range);
/* The heap's used page ranges (for migrating or measuring a whole heap); returns how many exist, and
 * fills at most max of them. */
int cdm_heap_ranges(cdm_heap *heap, cdm_heap_range *ranges, int32_t max);
void cdm_heap_get_stats(cdm_heap *heap, cdm_heap_stats *out);
uint32_t cdm_heap_class_size(int32_t size_class);

/* The default heap (created on first use over a host-placed engine of its own, unless set) and the
 * malloc family on it, for native code built against CdmUserMem. */
cdm_heap *cdm_default_heap(void);
void cdm_set_default_heap(cdm_heap *heap);
void *cdm_malloc(size_t bytes);
void *cdm_calloc(size_t count, size_t size);
void *cdm_realloc(void *p, size_t bytes);
void cdm_free(void *p);
void *cdm_aligned_alloc(size_t alignment, size_t bytes);
int cdm_posix_memalign(void **out, size_t alignment, size_t bytes);
size_t cdm_malloc_usable_size(const void *p);
#endif
