/* Regions: reserved ranges over a host memfd, their page-state tables and mapping accounting. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

/* Mappings a region holds besides the pieces of its range: the page-state table. */
#define REGION_FIXED_MAPPINGS 1

bool budget_take(cdm_engine *e, int64_t delta) {
    uint64_t cur = atomic_load(&e->mappings_in_use);
    for (;;) {
        uint64_t next = cur + (uint64_t)delta;
        if (delta > 0 && next > e->mapping_budget) return false;
        if (atomic_compare_exchange_weak(&e->mappings_in_use, &cur, next)) return true;
    }
}

/* Pages share a key exactly when one mapping can cover both: same file, offsets contiguous. */
uint64_t piece_key(const cdm_region *r, uint64_t page, uint64_t w) {
    (void)r;
    unsigned s = PS_STATE(w);
    if (s == PS_EMPTY || s == PS_FAULTING || PS_NODE(w) == CDM_HOST_NODE) return 0;
    return device_piece_key(PS_NODE(w), PS_FRAME(w), page);
}

/* Change in the piece count if [first, first+count) were mapped with one key. Caller holds remap_lock. */
int64_t pieces_delta(cdm_region *r, uint64_t first, uint64_t count, uint64_t new_key) {
    uint64_t end = first + count;
    int64_t before = 0, after = 0;
    uint64_t lo = first > 0 ? first : 1, hi = end < r->pages ? end : r->pages - 1;
    uint64_t prev = lo > 0 ? piece_key(r, lo - 1, region_word(r, lo - 1)) : 0;
    for (uint64_t i = lo; i <= hi && i < r->pages; i++) {
        uint64_t k = piece_key(r, i, region_word(r, i));
        before += k != prev;
        prev = k;
    }
    if (first > 0) after += new_key != piece_key(r, first - 1, region_word(r, first - 1));
    if (end < r->pages) after += new_key != piece_key(r, end, region_word(r, end));
    return after - before;
}

/* Maps [first, first+count) of the region from node's arena and registers it; the caller wakes.
 * populate installs PTEs now: only for pages all present in the arena, since populating a hole before
 * the piece is registered would create a page behind the page-state table's back. */
int map_backing(cdm_region *r, uint64_t first, uint64_t count, int node, uint64_t frame, bool populate) {
    cdm_engine *e = r->engine;
    int fd = node == CDM_HOST_NODE ? r->host_fd : e->nodes[node].fd;
    off_t off = (off_t)((node == CDM_HOST_NODE ? first : frame) * PAGE);
    void *addr = r->base + first * PAGE;
    int flags = MAP_SHARED | MAP_FIXED | MAP_NORESERVE | (populate ? MAP_POPULATE : 0);
    if (mmap(addr, count * PAGE, PROT_READ | PROT_WRITE, flags, fd, off) == MAP_FAILED)
        return -errno;
    /* MAP_FIXED dropped the registration of this piece; without it a missing page would silently zero-fill. */
    return uffd_register(e->uffd, addr, count * PAGE);
}

cdm_region *engine_find_region(cdm_engine *e, uint64_t addr) {
    for (int i = 0; i < e->region_count; i++) {
        cdm_region *r = e->regions[i];
        if (addr >= (uint64_t)r->base && addr < (uint64_t)r->base + r->size) return r;
    }
    return NULL;
}

int cdm_region_create(cdm_engine *e, uint64_t size, int32_t placement, uint32_t fault_around,
                      uint32_t readahead_pages, cdm_region **out, uint64_t *base) {
    *out = NULL;
    if (size == 0 || size % PAGE || placement < 0 || placement >= e->node_count) return -EINVAL;
    if (fault_around == 0) fault_around = 1;
    if (!budget_take(e, 1 + REGION_FIXED_MAPPINGS)) return CDM_E_MAPPING_BUDGET;
    cdm_region *r = calloc(1, sizeof *r);
    int rc = -ENOMEM;
    if (!r) goto fail;
    r->engine = e;
    r->size = size;
    r->pages = size / PAGE;
    r->placement = placement;
    r->fault_around = fault_around;
    r->readahead = readahead_pages;
    r->pieces = 1;
    r->host_fd = -1;
    r->base = MAP_FAILED;
    r->pt = MAP_FAILED;
    pthread_mutex_init(&r->remap_lock, NULL);
    r->host_fd = memfd_create("cdm-host-arena", MFD_CLOEXEC);
    if (r->host_fd < 0 || ftruncate(r->host_fd, (off_t)size) < 0) { rc = -errno; goto fail; }
    int prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED | MAP_NORESERVE;
    r->base = mmap(NULL, size, prot, flags, r->host_fd, 0);
    if (r->base == MAP_FAILED) { rc = -errno; goto fail; }
    r->pt = mmap(NULL, r->pages * sizeof(uint64_t), prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r->pt == MAP_FAILED) { rc = -errno; goto fail; }
    if ((rc = uffd_register(e->uffd, r->base, size)) < 0) goto fail;
    pthread_rwlock_wrlock(&e->regions_lock);
    if (e->region_count == MAX_REGIONS) {
        pthread_rwlock_unlock(&e->regions_lock);
        uffd_unregister(e->uffd, r->base, size);
        rc = -EMFILE;
        goto fail;
    }
    e->regions[e->region_count++] = r;
    pthread_rwlock_unlock(&e->regions_lock);
    *out = r;
    *base = (uint64_t)r->base;
    return 0;
fail:
    if (r) {
        if (r->pt != MAP_FAILED) munmap((void *)r->pt, r->pages * sizeof(uint64_t));
        if (r->base != MAP_FAILED) munmap(r->base, size);
        if (r->host_fd >= 0) close(r->host_fd);
        pthread_mutex_destroy(&r->remap_lock);
        free(r);
    }
    budget_take(e, -(1 + REGION_FIXED_MAPPINGS));
    return rc;
}

/* Returns every device frame the region holds to its node, coalescing contiguous frames. */
static void release_device_frames(cdm_region *r) {
    cdm_engine *e = r->engine;
    int run_node = -1;
    uint64_t run_start = 0, run_len = 0;
    for (uint64_t p = 0; p < r->pages && atomic_load(&r->device_pages) > 0; p++) {
        uint64_t w = region_word(r, p);
        int node = PS_STATE(w) == PS_EMPTY || PS_STATE(w) == PS_FAULTING ? CDM_HOST_NODE : PS_NODE(w);
        if (node != CDM_HOST_NODE && node == run_node && PS_FRAME(w) == run_start + run_len) {
            run_len++;
            continue;
        }
        if (run_len) pool_free(&e->nodes[run_node].pool, run_start, run_len), atomic_fetch_sub(&r->device_pages, run_len);
        run_node = node;
        run_start = PS_FRAME(w);
        run_len = node != CDM_HOST_NODE;
    }
    if (run_len) pool_free(&e->nodes[run_node].pool, run_start, run_len), atomic_fetch_sub(&r->device_pages, run_len);
}

int cdm_region_destroy(cdm_region *r) {
    cdm_engine *e = r->engine;
    pthread_rwlock_wrlock(&e->regions_lock);
    for (int i = 0; i < e->region_count; i++)
        if (e->regions[i] == r) {
            e->regions[i] = e->regions[--e->region_count];
            break;
        }
    readahead_forget(e, r);
    pthread_rwlock_unlock(&e->regions_lock);
    /* Unregistering wakes every thread blocked on this range; they retry on a plain mapping. */
    uffd_unregister(e->uffd, r->base, r->size);
    release_device_frames(r);
    atomic_fetch_sub(&e->host_pages, r->host_pages);
    munmap(r->base, r->size);
    munmap((void *)r->pt, r->pages * sizeof(uint64_t));
    close(r->host_fd);
    budget_take(e, -(int64_t)(r->pieces + REGION_FIXED_MAPPINGS));
    pthread_mutex_destroy(&r->remap_lock);
    free(r);
    return 0;
}

int cdm_region_residency(cdm_region *r, uint64_t first, uint64_t count, int8_t *nodes) {
    if (first > r->pages || count > r->pages - first) return -EINVAL;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t w = region_word(r, first + i);
        nodes[i] = (PS_STATE(w) == PS_EMPTY || PS_STATE(w) == PS_FAULTING) ? -1 : (int8_t)PS_NODE(w);
    }
    return 0;
}

uint64_t cdm_region_pieces(cdm_region *r) {
    pthread_mutex_lock(&r->remap_lock);
    uint64_t n = r->pieces;
    pthread_mutex_unlock(&r->remap_lock);
    return n;
}
