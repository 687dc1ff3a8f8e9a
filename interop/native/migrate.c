/* Migration, after migrate_vma, one batch per native call: prepare (claim, allocate, write-protect) ->
 * copy (copy engine, or pwrite into the host memfd) -> commit (claim per page, remap, re-register, release
 * the source, wake) -> retry the pages writers disturbed. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include "internal.h"

/* Where a run's bytes are read. Host pages are read through the region itself: its PTEs are populated
 * (the pages were touched, or a remap back to the host populated them) and stay readable while
 * write-protected; a second, unpopulated view of the memfd would take a fault every few pages (measured:
 * 2 MiB copies twice as slow). Device frames are read through the populated arena view. */
static uint8_t *source_addr(cdm_region *r, int node, uint64_t page, uint64_t frame) {
    return node == CDM_HOST_NODE ? r->base + page * PAGE : r->engine->nodes[node].view + frame * PAGE;
}

/* Pages from p that could join one source run: resident off target, one source node, contiguous frames. */
static uint64_t source_run_length(cdm_region *r, uint64_t p, uint64_t end, int target) {
    uint64_t w0 = region_word(r, p), n = 0;
    for (uint64_t q = p; q < end; q++, n++) {
        uint64_t w = region_word(r, q);
        if (PS_STATE(w) != PS_RESIDENT || PS_NODE(w) == target || PS_NODE(w) != PS_NODE(w0)) break;
        if (PS_NODE(w0) != CDM_HOST_NODE && PS_FRAME(w) != PS_FRAME(w0) + n) break;
    }
    return n;
}

static void run_close(cdm_region *r, cdm_run *run, uint64_t dst_capacity) {
    if (run->dst_node != CDM_HOST_NODE && dst_capacity > run->page_count)
        pool_free(&r->engine->nodes[run->dst_node].pool, run->dst_frame + run->page_count, dst_capacity - run->page_count);
}

/* Gives a page we claimed back to its source: after an abort, the writer's handler finishes first. */
static void restore_page(cdm_region *r, uint64_t p) {
    for (;;) {
        uint64_t w = region_word(r, p);
        unsigned s = PS_STATE(w);
        if (s == PS_ABORTING) { sched_yield(); continue; }
        if (s == PS_ABORTED) { region_store(r, p, PS_WITH_STATE(w, PS_RESIDENT)); return; }
        if (region_cas(r, p, &w, PS_WITH_STATE(w, PS_RESIDENT))) return;
    }
}

/* Undoes pages [off, off+n) of a run: unprotect while still owning them, then restore and free. */
static void cancel_run(cdm_region *r, cdm_run *run, uint64_t off, uint64_t n, uint64_t first, uint8_t *outcomes,
                       uint8_t outcome) {
    uint64_t p = run->first_page + off;
    uffd_write_protect(r->engine->uffd, r->base + p * PAGE, n * PAGE, false, true);
    for (uint64_t k = 0; k < n; k++) {
        restore_page(r, p + k);
        outcomes[p + k - first] = outcome;
    }
    if (run->dst_node != CDM_HOST_NODE) pool_free(&r->engine->nodes[run->dst_node].pool, run->dst_frame + off, n);
}

/* Claims, allocates and write-protects up to count pages; returns pages processed (a prefix) or -errno. */
static int64_t migrate_prepare(cdm_region *r, uint64_t first, uint64_t count, int32_t target, cdm_run *runs,
                            uint32_t max_runs, uint32_t *run_count, uint8_t *outcomes) {
    cdm_engine *e = r->engine;
    *run_count = 0;
    uint64_t end = first + count, p = first, dst_capacity = 0;
    cdm_run *run = NULL;
    uint32_t nr = 0;
    while (p < end) {
        uint64_t w = region_word(r, p);
        unsigned s = PS_STATE(w);
        uint8_t *out = &outcomes[p - first];
        if (s == PS_EMPTY) {
            /* Nothing to copy: record the target so that the first touch lands there. */
            if (!region_cas(r, p, &w, PS_MAKE(PS_EMPTY, target + 1, 0))) continue;
            *out = CDM_OUT_PLACED;
        } else if (s == PS_RESIDENT && PS_NODE(w) == target) {
            *out = CDM_OUT_ALREADY_THERE;
        } else if (s == PS_RESIDENT) {
            int src = PS_NODE(w);
            uint64_t frame = PS_FRAME(w);
            bool joins = run && run->src_node == src && p == run->first_page + run->page_count &&
                         run->page_count < dst_capacity &&
                         (src == CDM_HOST_NODE || frame == run->src_frame + run->page_count);
            if (!joins) {
                if (run) run_close(r, run, dst_capacity), run = NULL;
                if (nr == max_runs) break;
                uint64_t want = source_run_length(r, p, end, target), start = 0, got = want;
                if (target != CDM_HOST_NODE) {
                    uint64_t hint = UINT64_MAX;
                    uint64_t prev = p > 0 ? region_word(r, p - 1) : 0;
                    if (p > 0 && PS_STATE(prev) >= PS_RESIDENT && PS_NODE(prev) == target) hint = PS_FRAME(prev) + 1;
                    start = pool_alloc(&e->nodes[target].pool, want, hint, &got);
                }
                if (got == 0) {
                    *out = CDM_OUT_NO_CAPACITY;
                    p++;
                    continue;
                }
                run = &runs[nr++];
                *run = (cdm_run){.first_page = p, .src_node = src, .src_frame = frame, .dst_node = target,
                                 .dst_frame = start, .src_addr = source_addr(r, src, p, frame),
                                 .dst_addr = target == CDM_HOST_NODE ? NULL : e->nodes[target].view + start * PAGE};
                dst_capacity = got;
            }
            if (!region_cas(r, p, &w, PS_WITH_STATE(w, PS_MIGRATING))) continue;
            run->page_count++;
            *out = CDM_OUT_PENDING;
        } else {
            *out = CDM_OUT_BUSY; /* being resolved or migrated by someone else */
        }
        if (*out != CDM_OUT_PENDING && run) run_close(r, run, dst_capacity), run = NULL;
        p++;
    }
    if (run) run_close(r, run, dst_capacity);
    /* Drop runs that ended up empty (a lost race right after opening). */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < nr; i++) {
        if (runs[i].page_count == 0) continue;
        runs[kept++] = runs[i];
    }
    nr = kept;
    /* Protect after claiming: a write before this point lands in the source and the copy sees it. */
    for (uint32_t i = 0; i < nr; i++) {
        cdm_run *ru = &runs[i];
        int rc = uffd_write_protect(e->uffd, r->base + ru->first_page * PAGE, ru->page_count * PAGE, true, false);
        if (rc < 0) {
            for (uint32_t k = 0; k < nr; k++) cancel_run(r, &runs[k], 0, runs[k].page_count, first, outcomes, CDM_OUT_FAILED);
            return rc;
        }
    }
    *run_count = nr;
    return (int64_t)(p - first);
}

/* Host ranges a commit moved off the host, released together at its end. */
typedef struct host_releases {
    uint64_t first[64], count[64];
    uint32_t n;
} host_releases;

static void punch(cdm_region *r, uint64_t first, uint64_t count) {
    fallocate(r->host_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * PAGE), (off_t)(count * PAGE));
}

static void release_later(cdm_region *r, host_releases *h, uint64_t first, uint64_t count) {
    if (h->n == 64) punch(r, first, count);
    else h->first[h->n] = first, h->count[h->n++] = count;
}

/* Releases the recorded ranges: with one punch over their whole span when every page in it is off the
 * host (then the span holds no host data), else range by range. Untouched or faulting pages fail the
 * test: a first touch may be filling their host page right now. Caller holds remap_lock. */
static void release_host_pages(cdm_region *r, host_releases *h) {
    if (h->n == 0) return;
    uint64_t lo = h->first[0], hi = h->first[h->n - 1] + h->count[h->n - 1];
    bool whole = h->n > 1;
    for (uint64_t p = lo; whole && p < hi; p++) {
        uint64_t w = region_word(r, p);
        whole = PS_STATE(w) != PS_EMPTY && PS_STATE(w) != PS_FAULTING && PS_NODE(w) != CDM_HOST_NODE;
    }
    if (whole) punch(r, lo, hi - lo);
    else for (uint32_t i = 0; i < h->n; i++) punch(r, h->first[i], h->count[i]);
    h->n = 0;
}

/* Remaps claimed pages [off, off+n) of a run to their copies; the commit wakes their writers once at the end. */
static int commit_pages(cdm_region *r, cdm_run *run, uint64_t off, uint64_t n, uint64_t first, uint8_t *outcomes,
                        host_releases *releases) {
    cdm_engine *e = r->engine;
    uint64_t p = run->first_page + off, dst_frame = run->dst_frame + off;
    int dst = run->dst_node, src = run->src_node;
    uint64_t key = dst == CDM_HOST_NODE ? 0 : device_piece_key(dst, dst_frame, p);
    int64_t delta = pieces_delta(r, p, n, key);
    if (delta > 0 && !budget_take(e, delta)) {
        atomic_fetch_add(&e->st.budget_refusals, 1);
        cancel_run(r, run, off, n, first, outcomes, CDM_OUT_MAPPING_BUDGET);
        return 0;
    }
    /* Back on the host, populate the PTEs from the pages just written: the next migration reads its
     * source through them (a fault every few pages otherwise, measured 2.7x slower for 2 MiB). */
    int rc = map_backing(r, p, n, dst, dst_frame, dst == CDM_HOST_NODE);
    if (rc < 0) {
        if (delta > 0) budget_take(e, -delta);
        /* MAP_FIXED may have unmapped the old piece before failing: map the source back. */
        map_backing(r, p, n, src, run->src_frame + off, false);
        cancel_run(r, run, off, n, first, outcomes, CDM_OUT_FAILED);
        return rc;
    }
    if (delta < 0) budget_take(e, delta);
    r->pieces += delta;
    for (uint64_t k = 0; k < n; k++) {
        region_store(r, p + k, PS_MAKE(PS_RESIDENT, dst, dst == CDM_HOST_NODE ? 0 : dst_frame + k));
        outcomes[p + k - first] = CDM_OUT_MIGRATED;
    }
    if (src == CDM_HOST_NODE) {
        release_later(r, releases, p, n);
        atomic_fetch_sub(&r->host_pages, n);
        atomic_fetch_sub(&e->host_pages, n);
    } else {
        pool_free(&e->nodes[src].pool, run->src_frame + off, n);
        atomic_fetch_sub(&r->device_pages, n);
    }
    if (dst == CDM_HOST_NODE) {
        atomic_fetch_add(&r->host_pages, n);
        atomic_fetch_add(&e->host_pages, n);
    } else {
        atomic_fetch_add(&r->device_pages, n);
    }
    atomic_fetch_add(&e->st.migrated, n);
    return 0;
}

/* Commits copied runs; outcomes is indexed from the prepare call's first page. */
static int migrate_commit(cdm_region *r, uint64_t first, cdm_run *runs, uint32_t run_count, uint8_t *outcomes) {
    int err = 0;
    host_releases releases = {.n = 0};
    pthread_mutex_lock(&r->remap_lock);
    for (uint32_t i = 0; i < run_count; i++) {
        cdm_run *run = &runs[i];
        uint64_t k = 0;
        while (k < run->page_count) {
            /* Claim the longest stretch no writer disturbed; a disturbed page splits the run. */
            uint64_t j = k;
            for (; j < run->page_count; j++) {
                uint64_t w = region_word(r, run->first_page + j);
                if (PS_STATE(w) != PS_MIGRATING || !region_cas(r, run->first_page + j, &w, PS_WITH_STATE(w, PS_COMMITTING)))
                    break;
            }
            if (j > k) {
                int rc = commit_pages(r, run, k, j - k, first, outcomes, &releases);
                if (rc < 0 && !err) err = rc;
            }
            if (j < run->page_count) {
                uint64_t p = run->first_page + j;
                restore_page(r, p);
                outcomes[p - first] = CDM_OUT_BUSY;
                if (run->dst_node != CDM_HOST_NODE) pool_free(&r->engine->nodes[run->dst_node].pool, run->dst_frame + j, 1);
                j++;
            }
            k = j;
        }
    }
    release_host_pages(r, &releases);
    /* One wake for every writer blocked on a committed page (a wake where none waits is harmless). */
    if (run_count > 0) {
        uint64_t lo = runs[0].first_page, hi = runs[run_count - 1].first_page + runs[run_count - 1].page_count;
        uffd_wake(r->engine->uffd, r->base + lo * PAGE, (hi - lo) * PAGE);
    }
    pthread_mutex_unlock(&r->remap_lock);
    return err;
}

/* Copies one run to its destination. Host pages are written into the host memfd with pwrite: the kernel
 * fills its page cache directly, 2.4x faster here than copying through a view whose PTEs the source's
 * release zapped (a write fault per page). Device frames are populated: the copy engine streams there. */
static int copy_run(cdm_region *r, const cdm_run *run) {
    uint64_t bytes = run->page_count * PAGE;
    if (run->dst_node != CDM_HOST_NODE) {
        channels_copy(&r->engine->copy, run->dst_addr, run->src_addr, bytes);
        return 0;
    }
    for (uint64_t done = 0; done < bytes;) {
        ssize_t n = pwrite(r->host_fd, run->src_addr + done, bytes - done, (off_t)(run->first_page * PAGE + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -errno : -EIO;
        done += (uint64_t)n;
    }
    return 0;
}

/* Prepare, copy, commit until every page of the span has an outcome. */
static int migrate_span(cdm_region *r, uint64_t first, uint64_t count, int target, uint8_t *outcomes, uint64_t *bytes) {
    enum { RUNS_PER_STEP = 64 };
    cdm_run runs[RUNS_PER_STEP];
    for (uint64_t done = 0; done < count;) {
        uint32_t nr;
        int64_t processed = migrate_prepare(r, first + done, count - done, target, runs, RUNS_PER_STEP, &nr, outcomes + done);
        if (processed < 0) return (int)processed;
        for (uint32_t i = 0; i < nr; i++) {
            int rc = copy_run(r, &runs[i]);
            if (rc < 0) {
                /* Nothing was remapped yet: give every claimed page of this step back to its source. */
                for (uint32_t k = 0; k < nr; k++) cancel_run(r, &runs[k], 0, runs[k].page_count, first + done, outcomes + done, CDM_OUT_FAILED);
                return rc;
            }
            *bytes += runs[i].page_count * PAGE;
        }
        int rc = migrate_commit(r, first + done, runs, nr, outcomes + done);
        if (rc < 0) return rc;
        done += (uint64_t)processed;
    }
    return 0;
}

int cdm_migrate_batch(cdm_region *r, uint64_t first, uint64_t count, int32_t target, uint32_t busy_retries,
                      uint8_t *outcomes, uint64_t *bytes_copied) {
    *bytes_copied = 0;
    if (target < 0 || target >= r->engine->node_count || first > r->pages || count > r->pages - first) return -EINVAL;
    int rc = migrate_span(r, first, count, target, outcomes, bytes_copied);
    for (uint32_t attempt = 0; rc == 0 && attempt < busy_retries; attempt++) {
        bool any = false;
        for (uint64_t i = 0; i < count && rc == 0;) {
            if (outcomes[i] != CDM_OUT_BUSY) { i++; continue; }
            uint64_t j = i;
            while (j < count && outcomes[j] == CDM_OUT_BUSY) j++;
            rc = migrate_span(r, first + i, j - i, target, outcomes + i, bytes_copied);
            any = true;
            i = j;
        }
        if (!any) break;
    }
    return rc;
}
