/* Migration with the kernel's migrate_vma semantics, one batch per native call. Each step claims pages
 * (page-state CAS), detaches them (UFFDIO_MOVE out of the region: an accessor now faults and waits;
 * the kernel refuses pages it holds pinned), copies them on the copy channels, attaches the destination
 * (UFFDIO_MOVE of a device frame, or UFFDIO_COPY into a fresh host page; both wake the waiters) and
 * releases the source. No frame or staging slot is reused while the kernel may still write its page. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* fork(): migrations hold this for reading from detach to release, so a child is never made while a
 * page sits detached in staging (the child would see a hole where the parent has data). */
static pthread_rwlock_t fork_lock;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
/* Children of fork() made since the process started, counted in each child: an engine made in an
 * earlier generation belongs to an ancestor. Cheaper than getpid() on every system call. */
_Atomic uint64_t fork_generation;
static void fork_lock_make(void) {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A stream of migrations must not starve fork. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&fork_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
}
static void fork_prepare(void) { pthread_rwlock_wrlock(&fork_lock); }
static void fork_parent(void) { pthread_rwlock_unlock(&fork_lock); }
/* The child's thread has a new tid, so it cannot unlock the parent's write lock: it starts a new one. */
static void fork_child(void) {
    atomic_fetch_add(&fork_generation, 1);
    fork_lock_make();
}
static void fork_setup(void) {
    fork_lock_make();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}
void fork_lock_init(void) { pthread_once(&fork_once, fork_setup); }
bool engine_forked(const cdm_engine *e) { return e->generation != atomic_load_explicit(&fork_generation, memory_order_relaxed); }

/* Contiguous pages of one source, claimed together; index i covers region page first_page + i. */
typedef struct mig_run {
    uint64_t first_page, count, capacity;
    int src;
    uint64_t src_frame; /* device source: its first frame (frames are contiguous) */
    uint64_t dst_frame; /* device target: its first frame */
    uint64_t slot;      /* host source: its first staging slot */
    uint64_t spare;     /* host target: its first spare host page, when has_spare */
    bool has_spare;
    bool within_node;     /* a compaction's move to another frame of the same node: the group is not charged twice */
    cdm_reservation *res; /* device target: the reservation its frames were drawn from, or NULL */
} mig_run;

#define RUNS_PER_STEP 64

static uint8_t *holder_addr(cdm_engine *e, const mig_run *run, uint64_t i) {
    return run->src == CDM_HOST_NODE ? e->staging + (run->slot + i) * PAGE : frame_addr(e, run->src, run->src_frame + i);
}

/* Pages from p that can join one run: resident off target, unpinned, one source, contiguous frames. */
static uint64_t run_extent(cdm_region *r, uint64_t p, uint64_t end, int target) {
    uint64_t w0 = region_word(r, p), n = 0;
    for (uint64_t q = p; q < end; q++, n++) {
        uint64_t w = region_word(r, q);
        if (PS_STATE(w) != PS_RESIDENT || PS_PINS(w) || PS_NODE(w) != PS_NODE(w0)) break;
        if (PS_NODE(w) == target && !(target != CDM_HOST_NODE && pool_in_hold(&r->engine->nodes[target].pool, PS_FRAME(w)))) break;
        if (PS_NODE(w0) != CDM_HOST_NODE && PS_FRAME(w) != PS_FRAME(w0) + n) break;
    }
    return n;
}

/* Gives back unused destination frames, uncharging the group unless the move stays within one node. */
static void dst_give_back(cdm_region *r, const mig_run *run, int target, uint64_t start, uint64_t count) {
    if (run->within_node) pool_give_back(&r->engine->nodes[target].pool, start, count, run->res);
    else region_frames_free(r, target, start, count, run->res);
}

/* Gives back what a run allocated beyond index from. */
static void run_trim(cdm_region *r, mig_run *run, int target, uint64_t from) {
    cdm_engine *e = r->engine;
    if (run->capacity <= from) return;
    if (target != CDM_HOST_NODE) dst_give_back(r, run, target, run->dst_frame + from, run->capacity - from);
    if (run->src == CDM_HOST_NODE) pool_free(&e->staging_pool, run->slot + from, run->capacity - from);
    if (run->has_spare) staging_recycle(e, run->spare + from, run->capacity - from);
    run->capacity = from;
}

/* Releases the claim of a page that never left the region. */
static void unclaim(cdm_region *r, uint64_t p) {
    uint64_t w = region_word(r, p);
    region_store(r, p, PS_WITH_STATE(w, PS_RESIDENT));
}

/* Claims pages and opens runs; returns pages processed (a prefix of the span). */
static uint64_t claim(cdm_region *r, uint64_t first, uint64_t count, int target, int from, cdm_reservation *res,
                      mig_run *runs, uint32_t *run_count, uint8_t *out) {
    cdm_engine *e = r->engine;
    uint64_t end = first + count, p = first;
    mig_run *run = NULL;
    uint32_t nr = 0;
    while (p < end) {
        uint64_t w = region_word(r, p);
        unsigned s = PS_STATE(w);
        uint8_t *o = &out[p - first];
        bool joined = false;
        if (from >= 0 && (s == PS_EMPTY || PS_NODE(w) != from)) {
            *o = CDM_OUT_ALREADY_THERE; /* asked to move pages off one node only: this one is not there */
        } else if (s == PS_EMPTY && node_private(e, target)) {
            /* As migrate_vma gives an untouched page a zeroed device page: the CPU could not place it there. */
            uint64_t got, frame = region_frames_alloc(r, target, 1, UINT64_MAX, &got, res && res->node == target ? res : NULL, NULL);
            if (got == 0) {
                *o = CDM_OUT_NO_CAPACITY;
            } else {
                memset(frame_addr(e, target, frame), 0, PAGE);
                why_store(r, p, WHY_MAKE(CDM_WHY_MIGRATED, 0));
                if (!region_cas(r, p, &w, PS_MAKE(PS_RESIDENT, target, frame))) {
                    region_frames_free(r, target, frame, 1, res && res->node == target ? res : NULL);
                    continue; /* touched meanwhile: look again */
                }
                atomic_fetch_add(&r->device_pages, 1);
                atomic_fetch_add(&e->st.migrated, 1);
                *o = CDM_OUT_MIGRATED;
            }
        } else if (s == PS_EMPTY) {
            /* Nothing to copy: record the target so that the first touch lands there. */
            if (!region_cas(r, p, &w, PS_MAKE(PS_EMPTY, target + 1, PS_FRAME(w)))) continue; /* its plan and rule stay */
            *o = CDM_OUT_PLACED;
        } else if (s == PS_RESIDENT && PS_NODE(w) == target &&
                   !(target != CDM_HOST_NODE && pool_in_hold(&e->nodes[target].pool, PS_FRAME(w)))) {
            *o = CDM_OUT_ALREADY_THERE; /* (a page on a frame a compaction holds moves to another frame of its node) */
        } else if (s == PS_RESIDENT && PS_PINS(w)) {
            *o = CDM_OUT_PINNED;
            atomic_fetch_add(&e->st.refused_pinned, 1);
        } else if (s == PS_RESIDENT) {
            int src = PS_NODE(w);
            uint64_t frame = PS_FRAME(w);
            bool fits = run && run->src == src && p == run->first_page + run->count && run->count < run->capacity &&
                        (src == CDM_HOST_NODE || frame == run->src_frame + run->count);
            if (!fits) {
                if (run) run_trim(r, run, target, run->count), run = NULL;
                if (nr == RUNS_PER_STEP) break;
                uint64_t want = run_extent(r, p, end, target), dst = 0, slot = 0, got = want;
                if (want == 0) continue; /* changed under us: look again */
                cdm_reservation *drawn = res && res->node == target ? res : NULL;
                if (target != CDM_HOST_NODE) {
                    uint64_t hint = UINT64_MAX, prev = p > 0 ? region_word(r, p - 1) : 0;
                    if (p > 0 && PS_STATE(prev) >= PS_RESIDENT && PS_NODE(prev) == target) hint = PS_FRAME(prev) + 1;
                    /* Within one node the page keeps its charge: the frame it leaves is freed uncharged. */
                    dst = src == target ? pool_alloc(&e->nodes[target].pool, want, hint, &got, drawn)
                                        : region_frames_alloc(r, target, want, hint, &got, drawn, NULL);
                    if (got == 0) {
                        *o = CDM_OUT_NO_CAPACITY;
                        p++;
                        continue;
                    }
                }
                if (src == CDM_HOST_NODE) {
                    uint64_t slots;
                    slot = pool_alloc(&e->staging_pool, got, UINT64_MAX, &slots, NULL);
                    if (slots < got && target != CDM_HOST_NODE) region_frames_free(r, target, dst + slots, got - slots, drawn); /* src is the host: never within one node */
                    got = slots;
                    if (got == 0) break; /* staging is busy with other migrations: end the step here */
                }
                uint64_t spare = 0, spares = target == CDM_HOST_NODE ? spare_take(e, got, &spare) : 0;
                if (spares) got = spares;
                run = &runs[nr++];
                *run = (mig_run){.first_page = p, .capacity = got, .src = src, .src_frame = frame, .dst_frame = dst,
                                 .slot = slot, .spare = spare, .has_spare = spares > 0, .res = drawn, .within_node = src == target};
            }
            if (!region_cas(r, p, &w, PS_WITH_STATE(w, PS_MIGRATING))) continue;
            run->count++;
            *o = CDM_OUT_PENDING;
            joined = true;
        } else {
            *o = CDM_OUT_BUSY; /* being filled or migrated by someone else */
        }
        if (!joined && run) run_trim(r, run, target, run->count), run = NULL;
        p++;
    }
    if (run) run_trim(r, run, target, run->count);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < nr; i++)
        if (runs[i].count) runs[kept++] = runs[i];
    *run_count = kept;
    return p - first;
}

/* The kernel refused to move a page out (EBUSY): pinned by the kernel, or shared copy-on-write with a
 * forked child (pagemap: present but not exclusively mapped). */
static uint8_t refusal(cdm_engine *e, uint8_t *addr) {
    uint64_t entry;
    if (pagemap_read(e, addr, &entry) && ((entry >> 63) & 1) && !((entry >> 56) & 1)) {
        atomic_fetch_add(&e->st.refused_shared, 1);
        return CDM_OUT_SHARED;
    }
    atomic_fetch_add(&e->st.refused_pinned, 1);
    return CDM_OUT_PINNED;
}

/* The kernel refused to move page p out (EBUSY): it pins the page, or the page is shared copy-on-write
 * with a forked child (or was, and no write has made it this process's own since). Sharing is broken as
 * a write would break it, MADV_POPULATE_WRITE (the data stays as it is; a child keeps its copy), and the
 * move tried once more. The page is unclaimed meanwhile: should the application have discarded it, the
 * fault the populate takes is served as a refill. Returns 0 once moved, or the page's outcome. */
static uint8_t unshare_and_retry(cdm_region *r, uint64_t p, uint8_t *holder) {
    cdm_engine *e = r->engine;
    uint8_t *at = r->base + p * PAGE;
    unclaim(r, p);
    uint64_t w = region_word(r, p), moved;
    if (sys_madvise(e, at, PAGE, MADV_POPULATE_WRITE) < 0) return refusal(e, at);
    if (PS_STATE(w) != PS_RESIDENT || PS_PINS(w) || !region_cas(r, p, &w, PS_WITH_STATE(w, PS_MIGRATING))) return CDM_OUT_BUSY;
    int rc = uffd_move(e, holder, at, PAGE, false, &moved);
    if (rc == 0) {
        atomic_fetch_add(&e->st.unshared, 1);
        return 0;
    }
    unclaim(r, p);
    return rc == -EBUSY ? refusal(e, at) : CDM_OUT_FAILED;
}

/* Moves a run's pages out of the region into their holders; detached pages keep CDM_OUT_PENDING, the
 * others get their outcome and stay as they were. */
static void detach_run(cdm_region *r, mig_run *run, uint8_t *out) {
    cdm_engine *e = r->engine;
    if (node_private(e, run->src)) return; /* never mapped: its page is in its frame's slot already */
    bool single = false;
    for (uint64_t i = 0; i < run->count;) {
        uint64_t n = single ? 1 : run->count - i, moved;
        uint8_t *at = r->base + (run->first_page + i) * PAGE, *holder = holder_addr(e, run, i);
        int rc = uffd_move(e, holder, at, n * PAGE, false, &moved);
        i += moved / PAGE;
        if (rc == 0 || rc == -EAGAIN) continue;
        uint64_t p = run->first_page + i;
        uint8_t *o = &out[i];
        if (rc == -EBUSY) {
            uint8_t outcome = unshare_and_retry(r, p, holder_addr(e, run, i));
            if (outcome) *o = outcome; /* else detached: PENDING */
            i++;
            continue;
        } else if (rc == -ENOENT && single) {
            /* The user discarded it while we held it: it reads zeros again; wake whoever waits. */
            uint64_t filled;
            fill_zero(e, r->base + p * PAGE, 1, true, false, &filled); /* woken below, filled or not */
            *o = CDM_OUT_BUSY;
        } else if ((rc == -ENOENT || rc == -EINVAL || rc == -EEXIST) && !single) {
            single = true; /* a boundary the user made inside the run, or one occupied holder */
            continue;
        } else if (rc == -EEXIST && run->src == CDM_HOST_NODE && staging_empty(e, run->slot + i, 1) == 0) {
            continue; /* a holder slot a failure left populated: emptied, try again */
        } else {
            *o = CDM_OUT_FAILED;
        }
        unclaim(r, p);
        /* A toucher of this page that faulted while we held it (the application had discarded it) was
         * left to us: woken, it finds the page, or faults again and is served as usual. */
        uffd_wake(e, r->base + p * PAGE, PAGE);
        i++;
    }
}

/* Puts a detached page back where it was, by moving its holder back (or copying it back); the kernel
 * refusing both can only be a transient shortage, so this insists. Wakes the page's waiters. */
static void restore(cdm_region *r, mig_run *run, uint64_t i) {
    cdm_engine *e = r->engine;
    uint8_t *at = r->base + (run->first_page + i) * PAGE, *holder = holder_addr(e, run, i);
    for (unsigned attempt = 0; !node_private(e, run->src); attempt++) { /* a private source never left its slot */
        uint64_t done;
        int rc = uffd_move(e, at, holder, PAGE, true, &done);
        if (rc == 0 || rc == -EEXIST) break;
        rc = uffd_copy(e, at, holder, PAGE, true, &done);
        if (rc == 0 || rc == -EEXIST) {
            /* The holder keeps a copy. A staging slot must be a hole again before release_run frees it; an
             * arena slot too, since its frame is the page's and lives in the region again. */
            discard_pages(e, holder, PAGE);
            break;
        }
        usleep(attempt < 10 ? 100 : 10000);
    }
    unclaim(r, run->first_page + i);
    /* A private source was never detached, so nothing above woke a toucher that waited on the claim. */
    if (node_private(e, run->src)) uffd_wake(e, at, PAGE);
    atomic_fetch_add(&e->st.aborted, 1);
}

/* Copies and attaches the detached stretches of a run. Pages that could not be attached are restored
 * and reported failed. */
static void copy_and_attach(cdm_region *r, mig_run *run, int target, uint8_t *out, uint64_t *ns_copy, uint64_t *ns_attach) {
    cdm_engine *e = r->engine;
    for (uint64_t a = 0; a < run->count;) {
        if (out[a] != CDM_OUT_PENDING) { a++; continue; }
        uint64_t b = a;
        while (b < run->count && out[b] == CDM_OUT_PENDING) b++;
        uint8_t *holder = holder_addr(e, run, a);
        uint64_t t0 = now_ns(), i = a;
        /* Into a device frame, or a spare host page; without a spare, UFFDIO_COPY copies as it attaches. */
        if (target != CDM_HOST_NODE) channels_copy(&e->copy, frame_addr(e, target, run->dst_frame + a), holder, (b - a) * PAGE);
        if (node_private(e, target)) {
            /* Not mapped: the copy is the page. Its waiters are woken once it is published. */
            *ns_copy += now_ns() - t0;
            atomic_fetch_add(&e->st.bytes_copied, (b - a) * PAGE);
            a = b;
            continue;
        }
        else if (run->has_spare) channels_copy(&e->copy, e->staging + (run->spare + a) * PAGE, holder, (b - a) * PAGE);
        uint64_t t1 = now_ns();
        while (i < b) {
            uint64_t done;
            uint8_t *at = r->base + (run->first_page + i) * PAGE;
            int rc = target != CDM_HOST_NODE ? uffd_move(e, at, frame_addr(e, target, run->dst_frame + i), (b - i) * PAGE, true, &done)
                     : run->has_spare ? uffd_move(e, at, e->staging + (run->spare + i) * PAGE, (b - i) * PAGE, true, &done)
                                      : uffd_copy(e, at, holder_addr(e, run, i), (b - i) * PAGE, true, &done);
            i += done / PAGE;
            if (rc == 0 || rc == -EAGAIN) continue;
            out[i] = CDM_OUT_FAILED;
            restore(r, run, i);
            i++;
        }
        *ns_copy += t1 - t0;
        *ns_attach += now_ns() - t1;
        atomic_fetch_add(&e->st.bytes_copied, (b - a) * PAGE);
        a = b;
    }
}

/* Publishes attached pages, frees every source and every unused destination, and counts. */
static void release_run(cdm_region *r, mig_run *run, int target, uint32_t why, uint8_t *out) {
    cdm_engine *e = r->engine;
    uint64_t moved = 0;
    for (uint64_t i = 0; i < run->count; i++) {
        uint64_t p = run->first_page + i;
        if (out[i] == CDM_OUT_PENDING) {
            why_store(r, p, why);
            region_store(r, p, PS_MAKE(PS_RESIDENT, target, target == CDM_HOST_NODE ? 0 : run->dst_frame + i));
            out[i] = CDM_OUT_MIGRATED;
            moved++;
            if (run->within_node) pool_free(&e->nodes[run->src].pool, run->src_frame + i, 1);
            else if (run->src != CDM_HOST_NODE) region_frames_free(r, run->src, run->src_frame + i, 1, NULL);
        } else if (target != CDM_HOST_NODE) {
            dst_give_back(r, run, target, run->dst_frame + i, 1); /* its slot still holds a page */
        }
    }
    /* Spares moved into the region left holes; unused ones still hold their pages. */
    for (uint64_t i = 0; run->has_spare && i < run->count; i++) {
        if (out[i] == CDM_OUT_MIGRATED) pool_free(&e->staging_pool, run->spare + i, 1);
        else staging_recycle(e, run->spare + i, 1);
    }
    if (run->src == CDM_HOST_NODE) {
        /* Slots of migrated pages hold the old host pages: spares for later device-to-host moves. The
         * others are holes again (never detached, or put back). */
        for (uint64_t i = 0; i < run->count;) {
            uint64_t j = i;
            bool migrated = out[i] == CDM_OUT_MIGRATED;
            while (j < run->count && (out[j] == CDM_OUT_MIGRATED) == migrated) j++;
            if (migrated) staging_recycle(e, run->slot + i, j - i);
            else pool_free(&e->staging_pool, run->slot + i, j - i);
            i = j;
        }
        atomic_fetch_sub(&r->host_pages, moved);
        atomic_fetch_sub(&e->host_pages, moved);
        group_uncharge(r, CDM_HOST_NODE, moved);
    } else {
        atomic_fetch_sub(&r->device_pages, moved);
    }
    /* Nothing was attached for a private target: wake whoever touched the pages meanwhile. */
    if (node_private(e, target) && run->count) uffd_wake(e, r->base + run->first_page * PAGE, run->count * PAGE);
    if (target == CDM_HOST_NODE) {
        atomic_fetch_add(&r->host_pages, moved);
        atomic_fetch_add(&e->host_pages, moved);
        group_charge(r, CDM_HOST_NODE, moved, NULL);
    } else {
        atomic_fetch_add(&r->device_pages, moved);
    }
    atomic_fetch_add(&e->st.migrated, moved);
}

/* One step: claim, detach, copy, attach, release. Returns pages processed. */
static uint64_t migrate_step(cdm_region *r, uint64_t first, uint64_t count, int target, int from, cdm_reservation *res, uint32_t why,
                             uint8_t *out) {
    cdm_engine *e = r->engine;
    mig_run runs[RUNS_PER_STEP];
    uint32_t nr;
    uint64_t processed = claim(r, first, count, target, from, res, runs, &nr, out);
    pthread_rwlock_rdlock(&fork_lock);
    uint64_t t0 = now_ns(), ns_copy = 0, ns_attach = 0;
    for (uint32_t i = 0; i < nr; i++) detach_run(r, &runs[i], out + (runs[i].first_page - first));
    uint64_t t1 = now_ns();
    for (uint32_t i = 0; i < nr; i++) copy_and_attach(r, &runs[i], target, out + (runs[i].first_page - first), &ns_copy, &ns_attach);
    uint64_t t2 = now_ns();
    for (uint32_t i = 0; i < nr; i++) release_run(r, &runs[i], target, why, out + (runs[i].first_page - first));
    pthread_rwlock_unlock(&fork_lock);
    atomic_fetch_add(&e->st.ns_detach, t1 - t0);
    atomic_fetch_add(&e->st.ns_copy, ns_copy);
    atomic_fetch_add(&e->st.ns_attach, ns_attach);
    atomic_fetch_add(&e->st.ns_release, now_ns() - t2);
    return processed;
}

static void migrate_span(cdm_region *r, uint64_t first, uint64_t count, int target, int from, cdm_reservation *res, uint32_t why,
                         uint8_t *out) {
    for (uint64_t done = 0; done < count;) {
        uint64_t n = migrate_step(r, first + done, count - done, target, from, res, why, out + done);
        if (n == 0) sched_yield(); /* staging full with other migrations' pages: they free it within a step */
        done += n;
    }
}

int migrate_batch(cdm_region *r, uint64_t first, uint64_t count, int32_t target, int32_t from, uint32_t busy_retries,
                  cdm_reservation *res, uint32_t why, uint8_t *outcomes) {
    cdm_engine *e = r->engine;
    if (engine_forked(e)) return CDM_E_FORKED;
    if (target < 0 || target >= atomic_load(&e->node_count) || first > r->pages || count > r->pages - first) return -EINVAL;
    bool timed = atomic_load_explicit(&e->record_latency, memory_order_relaxed);
    uint64_t started = timed ? now_ns() : 0;
    memset(outcomes, CDM_OUT_NONE, count);
    migrate_span(r, first, count, target, from, res, why, outcomes);
    for (uint32_t attempt = 0; attempt < busy_retries; attempt++) {
        bool any = false;
        for (uint64_t i = 0; i < count;) {
            if (outcomes[i] != CDM_OUT_BUSY) { i++; continue; }
            uint64_t j = i;
            while (j < count && outcomes[j] == CDM_OUT_BUSY) j++;
            if (attempt > 0) sched_yield(); /* let the filler or the other migration finish */
            migrate_span(r, first + i, j - i, target, from, res, why, outcomes + i);
            any = true;
            i = j;
        }
        if (!any) break;
    }
    if (timed) latency_record(e, latency_of_batch(count), now_ns() - started);
    return 0;
}

int cdm_migrate_batch(cdm_region *r, uint64_t first, uint64_t count, int32_t target, uint32_t busy_retries,
                      cdm_reservation *res, uint8_t *outcomes) {
    return migrate_batch(r, first, count, target, -1, busy_retries, res, WHY_MAKE(CDM_WHY_MIGRATED, 0), outcomes);
}

int cdm_migrate_batch_why(cdm_region *r, uint64_t first, uint64_t count, int32_t target, uint32_t busy_retries,
                          cdm_reservation *res, int32_t why, uint32_t rule, uint8_t *outcomes) {
    if ((why != CDM_WHY_MIGRATED && why != CDM_WHY_REBALANCED) || rule > CDM_MAX_RULE) return -EINVAL;
    return migrate_batch(r, first, count, target, -1, busy_retries, res, WHY_MAKE(why, rule), outcomes);
}
