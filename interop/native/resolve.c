/* First-touch resolution and the native fault-service loop. Nothing here ever calls managed code, and
 * the fault thread never waits for another resolver: whoever fills a page wakes its waiters. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

/* Fills [addr, +pages) with zeros, waking its waiters if asked: real pages for writers (UFFDIO_COPY from the
 * zero buffer), the shared zero page for readers. *filled counts pages filled before an error. */
int fill_zero(cdm_engine *e, uint8_t *addr, uint64_t pages, bool writable, bool wake, uint64_t *filled) {
    *filled = 0;
    while (*filled < pages) {
        uint64_t chunk = pages - *filled < ZERO_CHUNK_PAGES ? pages - *filled : ZERO_CHUNK_PAGES, done;
        uint8_t *at = addr + *filled * PAGE;
        int rc = writable ? uffd_copy(e, at, e->zeros, chunk * PAGE, wake, &done) : uffd_zeropage(e, at, chunk * PAGE, wake, &done);
        *filled += done / PAGE;
        if (rc == -EAGAIN) continue;
        if (rc < 0) return rc;
    }
    return 0;
}

/* Publishes claimed pages [s, s+n) that could not be filled as untouched again, as they were (word w). */
static void unclaim_untouched(cdm_region *r, uint64_t s, uint64_t n, uint64_t w) {
    for (uint64_t k = 0; k < n; k++) region_store(r, s + k, w);
}

static void publish_host(cdm_region *r, uint64_t s, uint64_t n, uint32_t why) {
    cdm_engine *e = r->engine;
    for (uint64_t k = 0; k < n; k++) {
        why_store(r, s + k, why);
        region_store(r, s + k, PS_MAKE(PS_RESIDENT, CDM_HOST_NODE, 0));
    }
    atomic_fetch_add(&e->st.zero_filled, n);
    atomic_fetch_add(&r->host_pages, n);
    atomic_fetch_add(&e->host_pages, n);
    group_charge(r, CDM_HOST_NODE, n, NULL); /* the host has no limit: counted only */
}

/* Fills claimed pages [s, s+n) on the host. A window crossing a VMA boundary the user made (madvise,
 * mlock, mprotect on part of the region) is refused whole: it is then filled a page at a time. A page
 * that cannot be filled is never published: it and the rest of the run become untouched again. */
static int resolve_on_host(cdm_region *r, uint64_t s, uint64_t n, bool writable, uint64_t w, uint32_t why) {
    cdm_engine *e = r->engine;
    uint64_t p = s, end = s + n;
    bool single = false;
    while (p < end) {
        uint64_t want = single ? 1 : end - p, filled;
        int rc = fill_zero(e, r->base + p * PAGE, want, writable, false, &filled);
        publish_host(r, p, filled, why);
        p += filled;
        if (rc == 0) continue;
        if (rc == -EEXIST) {
            publish_host(r, p, 1, why); /* a page is there already: it is resident as it is */
            p++;
            continue;
        }
        if ((rc == -ENOENT || rc == -EINVAL) && !single) {
            single = true;
            continue;
        }
        atomic_fetch_add(&e->st.fill_errors, 1);
        unclaim_untouched(r, p, end - p, w);
        return rc;
    }
    return 0;
}

/* Moves zeroed device frames into claimed pages [s, s+n); returns how many pages got frames. A free
 * frame's arena slot always holds a page, so zeroing it never faults. */
static uint64_t resolve_on_device(cdm_region *r, uint64_t s, uint64_t n, int node, uint32_t why, bool *limited) {
    cdm_engine *e = r->engine;
    uint64_t done = 0;
    *limited = false;
    if (node_private(e, node)) return 0; /* a page the CPU touches must be mapped: never placed there */
    bool single = false;
    while (done < n) {
        uint64_t p = s + done, hint = UINT64_MAX, got;
        if (p > 0) {
            uint64_t prev = region_word(r, p - 1);
            if (PS_STATE(prev) >= PS_RESIDENT && PS_NODE(prev) == node) hint = PS_FRAME(prev) + 1;
        }
        bool short_of_limit;
        uint64_t frame = region_frames_alloc(r, node, single ? 1 : n - done, hint, &got, NULL, &short_of_limit);
        *limited = short_of_limit; /* why the last allocation came up short, if it did */
        if (got == 0) break;
        uint8_t *slot = frame_addr(e, node, frame);
        memset(slot, 0, got * PAGE); /* frames are reused: a first touch reads zeros, as on the host */
        uint64_t moved_bytes;
        int rc = uffd_move(e, r->base + p * PAGE, slot, got * PAGE, false, &moved_bytes);
        uint64_t moved = moved_bytes / PAGE;
        for (uint64_t k = 0; k < moved; k++) {
            why_store(r, p + k, why);
            region_store(r, p + k, PS_MAKE(PS_RESIDENT, node, frame + k));
        }
        atomic_fetch_add(&r->device_pages, moved);
        atomic_fetch_add(&e->st.first_touch_device, moved);
        done += moved;
        if (moved < got) region_frames_free(r, node, frame + moved, got - moved, NULL);
        if (rc == 0 || rc == -EAGAIN) continue;
        if ((rc == -ENOENT || rc == -EINVAL) && !single) {
            single = true;
            continue;
        }
        break; /* the rest lands on the host */
    }
    return done;
}

/* Places claimed pages [s, s+n), untouched word w: on the target while it has room, then on each node of
 * the plan's fallback order in turn; the host serves the rest (it has no capacity to run out of). */
static int resolve_run(cdm_region *r, uint64_t s, uint64_t n, uint64_t w, bool writable) {
    int target = empty_target(r, w);
    uint32_t rule = EMPTY_RULE(w);
    if (target == CDM_HOST_NODE) return resolve_on_host(r, s, n, writable, w, WHY_MAKE(CDM_WHY_TARGET, rule));
    bool limited;
    uint64_t done = resolve_on_device(r, s, n, target, WHY_MAKE(CDM_WHY_TARGET, rule), &limited);
    if (done == n) return 0;
    atomic_fetch_add(&r->engine->st.fallbacks, n - done);
    const placement_plan *plan = plan_of(r, w);
    /* Why the pages after the target's share went elsewhere: the target was full, or its group limit was reached. */
    uint32_t fell = limited ? CDM_WHY_GROUP_LIMIT : CDM_WHY_FALLBACK, why = CDM_WHY_LAST_RESORT;
    for (uint32_t i = 0; i < plan->count && done < n; i++) {
        int node = plan->nodes[i];
        if (node == target) continue;
        if (node == CDM_HOST_NODE) {
            why = fell;
            break;
        }
        bool ignored;
        done += resolve_on_device(r, s + done, n - done, node, WHY_MAKE(fell, rule), &ignored);
    }
    return done < n ? resolve_on_host(r, s + done, n - done, writable, w, WHY_MAKE(why, rule)) : 0;
}

/* Resolves every untouched page of [first, first+count), each on its placement node; returns the first
 * error (those pages stay untouched) or 0. */
int resolve_first_touch(cdm_region *r, uint64_t first, uint64_t count, bool writable) {
    uint64_t p = first, end = first + count;
    int err = 0;
    while (p < end) {
        uint64_t w = region_word(r, p);
        if (PS_STATE(w) != PS_EMPTY) { p++; continue; }
        int target = empty_target(r, w);
        uint64_t q = p;
        /* One run: pages with the same target, plan and rule. */
        while (q < end) {
            uint64_t wq = region_word(r, q);
            if (wq != w) break;
            if (!region_cas(r, q, &wq, PS_MAKE(PS_FAULTING, target, 0))) break;
            q++;
        }
        if (q == p) continue; /* lost a race for p: look at it again */
        int rc = resolve_run(r, p, q - p, w, writable);
        if (rc < 0 && !err) err = rc;
        p = q;
    }
    return err;
}

/* Whether a page is mapped now, from /proc/self/pagemap; false when that cannot be read. */
static bool page_present(cdm_engine *e, uint8_t *addr) {
    uint64_t entry;
    return pagemap_read(e, addr, &entry) && ((entry >> 63) & 1);
}

/* Pages a readahead worker resolves at a time. */
#define READAHEAD_STEP 64

static void retry_later(cdm_engine *e, uint64_t addr) {
    if (e->retry.count < RETRY_SLOTS) e->retry.addr[e->retry.count++] = addr;
    else uffd_wake(e, (void *)addr, PAGE); /* no room: the toucher faults again and brings a new event */
}

/* The user discarded a resident page (madvise DONTNEED and the like) and touched it again: it reads
 * zeros, like anonymous memory, and keeps its node. Owning the word keeps migrations off it meanwhile. */
static bool refill(cdm_engine *e, cdm_region *r, uint64_t p, uint64_t w) {
    /* Most such events are old: a toucher interrupted by a signal (the runtime suspending threads for a
     * GC) faults again and queues a second event for a page resolved since. Owning the word for those
     * would turn concurrent migrations of the page away as busy. */
    if (page_present(e, r->base + p * PAGE)) return true;
    if (!region_cas(r, p, &w, PS_WITH_STATE(w, PS_FAULTING))) return true;
    uint64_t filled;
    int rc = fill_zero(e, r->base + p * PAGE, 1, true, false, &filled);
    /* Back to resident with whatever pins changed meanwhile (unpin does not wait for a refill). */
    uint64_t cur = PS_WITH_STATE(w, PS_FAULTING);
    while (!region_cas(r, p, &cur, PS_WITH_STATE(cur, PS_RESIDENT))) {}
    if (rc == 0) atomic_fetch_add(&e->st.refilled, 1);
    if (rc == 0 || rc == -EEXIST || rc == -ENOENT) return true;
    atomic_fetch_add(&e->st.fill_errors, 1);
    retry_later(e, (uint64_t)(r->base + p * PAGE));
    return false;
}

/* Serves a missing-page fault; returns the pages [*wake_first, +*wake_count) the caller wakes once it
 * has let go of the region, less page *hold (UINT64_MAX: none), whose toucher waits for a retry: woken,
 * it would only fault again at once. */
static void handle_missing(cdm_engine *e, cdm_region *r, uint64_t p, bool writable, uint64_t *wake_first, uint64_t *wake_count,
                           uint64_t *hold) {
    uint64_t w = region_word(r, p);
    *wake_first = p;
    *wake_count = 1;
    *hold = UINT64_MAX;
    switch (PS_STATE(w)) {
    case PS_EMPTY: break;
    case PS_FAULTING: *wake_count = 0; return; /* its resolver wakes it */
    case PS_MIGRATING: *wake_count = 0; atomic_fetch_add(&e->st.faults_on_migrating, 1); return; /* the migration wakes it */
    default:
        if (PS_STATE(w) == PS_RESIDENT && node_private(e, PS_NODE(w))) {
            int rc = private_bring_back(r, p, w);
            if (rc <= 0) *wake_count = 0; /* busy: whoever holds it wakes the toucher */
            if (rc < 0) retry_later(e, (uint64_t)(r->base + p * PAGE));
            return;
        }
        if (!refill(e, r, p, w)) *wake_count = 0;
        return;
    }
    atomic_fetch_add(&e->st.faults_missing, 1);
    uint64_t fa = r->fault_around;
    uint64_t ws = p - p % fa, wn = ws + fa > r->pages ? r->pages - ws : fa;
    int rc = resolve_first_touch(r, ws, wn, writable);
    *wake_first = ws;
    *wake_count = wn;
    if (rc < 0 && rc != -ENOENT && PS_STATE(region_word(r, p)) == PS_EMPTY) {
        /* Not filled: its toucher waits for the retry. (ENOENT: its area went away; woken, it faults
         * on whatever is mapped there now.) */
        retry_later(e, (uint64_t)(r->base + p * PAGE));
        *hold = p;
    }
    /* A first touch right after resident pages looks sequential: resolve ahead of it, as the kernel reads
     * ahead in files. The stream's first step is resolved here, before the toucher is woken (otherwise,
     * with the CPUs busy, the toucher reaches the next window before the readahead thread runs, and every
     * window faults); the rest on the readahead thread while the toucher runs. */
    if (rc == 0 && r->readahead && ws > 0 && PS_STATE(region_word(r, ws - 1)) != PS_EMPTY && ws + wn < r->pages) {
        uint64_t next = ws + wn, end = next + r->readahead < r->pages ? next + r->readahead : r->pages;
        /* Steps end on READAHEAD_STEP boundaries, so that runs placed in aligned units (an interleave of 64
         * pages a node) stay one move each. */
        uint64_t step = READAHEAD_STEP - next % READAHEAD_STEP;
        if (step > end - next) step = end - next;
        if (resolve_first_touch(r, next, step, true) == 0) {
            atomic_fetch_add(&e->st.readahead, step);
            *wake_count += step;
            next += step;
        }
        pthread_mutex_lock(&e->ahead.lock);
        if (!r->dying && next < end) {
            e->ahead.region = r;
            e->ahead.next = next;
            e->ahead.end = end;
            pthread_cond_signal(&e->ahead.wake);
        }
        pthread_mutex_unlock(&e->ahead.lock);
    }
}

/* Takes and resolves the next step of the open stream; false when there is none. The step holds a
 * reference to its region, taken under ahead.lock, so destroy waits for at most one step. */
static bool readahead_step(cdm_engine *e) {
    pthread_mutex_lock(&e->ahead.lock);
    cdm_region *r = e->ahead.region;
    uint64_t first = e->ahead.next, count = 0;
    if (r) {
        atomic_fetch_add(&r->refs, 1);
        count = e->ahead.end - first < READAHEAD_STEP ? e->ahead.end - first : READAHEAD_STEP;
        e->ahead.next += count;
        if (e->ahead.next >= e->ahead.end) e->ahead.region = NULL;
    }
    pthread_mutex_unlock(&e->ahead.lock);
    if (!r) return false;
    int rc = resolve_first_touch(r, first, count, true);
    uint8_t *wake_at = r->base + first * PAGE;
    if (rc < 0) {
        /* Stop the stream; touchers of pages left untouched fault and are served as usual. */
        pthread_mutex_lock(&e->ahead.lock);
        if (e->ahead.region == r) e->ahead.region = NULL;
        pthread_mutex_unlock(&e->ahead.lock);
    } else {
        atomic_fetch_add(&e->st.readahead, count);
    }
    region_put(r);
    uffd_wake(e, wake_at, count * PAGE);
    return true;
}

void *readahead_loop(void *arg) {
    cdm_engine *e = arg;
    cdm_engine_thread = 1;
    for (;;) {
        pthread_mutex_lock(&e->ahead.lock);
        while (!e->ahead.region && !e->ahead.stopping) pthread_cond_wait(&e->ahead.wake, &e->ahead.lock);
        bool stopping = e->ahead.stopping;
        pthread_mutex_unlock(&e->ahead.lock);
        if (stopping) return NULL;
        while (readahead_step(e)) {}
    }
}

/* Called by region destroy before it waits for references: no stream may adopt the region again. */
void readahead_forget(cdm_engine *e, cdm_region *r) {
    pthread_mutex_lock(&e->ahead.lock);
    r->dying = true;
    if (e->ahead.region == r) e->ahead.region = NULL;
    pthread_mutex_unlock(&e->ahead.lock);
}

/* A fault in the engine's own areas (a hole a failure left in an arena or staging slot): fill it, so
 * whoever touched it goes on. The engine keeps these slots populated; this is the safety net. */
static bool handle_engine_area(cdm_engine *e, uint64_t addr) {
    bool ours = addr >= (uint64_t)e->staging && addr < (uint64_t)e->staging + e->staging_slots * PAGE;
    for (int i = 1; !ours && i < atomic_load(&e->node_count); i++)
        ours = addr >= (uint64_t)e->nodes[i].arena && addr < (uint64_t)e->nodes[i].arena + e->nodes[i].capacity;
    if (!ours) return false;
    uint64_t filled;
    int rc = fill_zero(e, (uint8_t *)addr, 1, true, true, &filled);
    if (rc == -EEXIST) rc = uffd_wake(e, (void *)addr, PAGE);
    if (rc < 0) retry_later(e, addr);
    return true;
}

/* Serves one fault. One that resolves pages (a first touch or a refill), not one that only waits for
 * someone else's resolver or migration, is timed from read_at (0: untimed) up to its wake, and recorded
 * before the wake, so a toucher that goes on finds its fault in the histogram. */
static void handle_fault(cdm_engine *e, uint64_t addr, uint64_t flags, uint64_t read_at) {
    addr &= ~(uint64_t)(PAGE - 1);
    cdm_region *r = region_get(e, addr);
    if (!r) {
        /* Its region was destroyed after the fault was queued (unregistering woke it), or it is ours. */
        handle_engine_area(e, addr);
        return;
    }
    uint64_t first, count, hold;
    uint8_t *base = r->base;
    handle_missing(e, r, (addr - (uint64_t)r->base) / PAGE, flags & UFFD_PAGEFAULT_FLAG_WRITE, &first, &count, &hold);
    region_put(r);
    if (read_at && count) latency_record(e, CDM_LAT_FAULT, now_ns() - read_at);
    /* Woken only now: a toucher that goes on to destroy the region finds no reference left to wait for. */
    int rc = 0;
    if (hold >= first && hold < first + count) {
        if (hold > first) rc |= uffd_wake(e, base + first * PAGE, (hold - first) * PAGE);
        if (hold + 1 < first + count) rc |= uffd_wake(e, base + (hold + 1) * PAGE, (first + count - hold - 1) * PAGE);
    } else if (count) {
        rc = uffd_wake(e, base + first * PAGE, count * PAGE);
    }
    /* A toucher left asleep: its page is resolved, so the retry finds it present and wakes it again. */
    if (rc < 0) retry_later(e, addr);
}

/* Retries the fills the kernel refused last time; those failing again queue themselves again. */
static void retry_pending(cdm_engine *e) {
    uint64_t addrs[RETRY_SLOTS];
    uint32_t n = e->retry.count;
    memcpy(addrs, e->retry.addr, n * sizeof addrs[0]);
    e->retry.count = 0;
    for (uint32_t i = 0; i < n; i++) handle_fault(e, addrs[i], UFFD_PAGEFAULT_FLAG_WRITE, 0);
}

static int engine_poll(cdm_engine *e, struct pollfd *fds, int timeout_ms) {
    int rc = inject_check(e, CDM_OP_POLL);
    if (rc) {
        errno = -rc;
        return -1;
    }
    return poll(fds, 2, timeout_ms);
}

static ssize_t engine_read(cdm_engine *e, void *buf, size_t len) {
    int rc = inject_check(e, CDM_OP_READ);
    if (rc) {
        errno = -rc;
        return -1;
    }
    return read(e->uffd, buf, len);
}

/* The fault thread: never exits but on stop, whatever poll and read say; errors are counted. */
void *fault_loop(void *arg) {
    cdm_engine *e = arg;
    cdm_engine_thread = 1;
    struct uffd_msg msgs[64];
    struct pollfd fds[2] = {{.fd = e->uffd, .events = POLLIN}, {.fd = e->stop_fd, .events = POLLIN}};
    uint64_t last_retry = now_ns();
    for (;;) {
        /* While a readahead stream is open this thread works on it too, between events: faults first. */
        pthread_mutex_lock(&e->ahead.lock);
        bool ahead = e->ahead.region != NULL;
        pthread_mutex_unlock(&e->ahead.lock);
        int timeout = ahead ? 0 : e->retry.count ? 1 : -1;
        int ready = engine_poll(e, fds, timeout);
        if (ready < 0) {
            if (errno != EINTR) {
                atomic_fetch_add(&e->st.loop_errors, 1);
                usleep(1000);
            }
            continue;
        }
        if (fds[1].revents) break;
        if (e->retry.count && now_ns() - last_retry >= 1000000) {
            last_retry = now_ns();
            retry_pending(e);
        }
        if (ready == 0) {
            if (ahead) readahead_step(e);
            continue;
        }
        ssize_t n = engine_read(e, msgs, sizeof msgs);
        if (n < 0) {
            /* EAGAIN: another wake-up took the events. */
            if (errno != EAGAIN && errno != EINTR) {
                atomic_fetch_add(&e->st.loop_errors, 1);
                usleep(1000);
            }
            continue;
        }
        /* Each fault's service time runs from this read, so it includes the faults served before it. */
        uint64_t read_at = atomic_load_explicit(&e->record_latency, memory_order_relaxed) ? now_ns() : 0;
        for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++)
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
                handle_fault(e, msgs[i].arg.pagefault.address, msgs[i].arg.pagefault.flags, read_at);
    }
    return NULL;
}

/* Resolves the range in steps, so a fault on a page of it waits for one step, never for the whole call. */
int cdm_region_populate(cdm_region *r, uint64_t first, uint64_t count) {
    if (engine_forked(r->engine)) return CDM_E_FORKED;
    if (first > r->pages || count > r->pages - first) return -EINVAL;
    for (uint64_t p = first; p < first + count; p += ZERO_CHUNK_PAGES) {
        uint64_t n = first + count - p < ZERO_CHUNK_PAGES ? first + count - p : ZERO_CHUNK_PAGES;
        int rc = resolve_first_touch(r, p, n, true);
        uffd_wake(r->engine, r->base + p * PAGE, n * PAGE);
        if (rc < 0) return rc;
    }
    /* Pages another resolver held are resolved (or given back untouched) within its step. */
    for (uint64_t p = first; p < first + count;) {
        unsigned s = PS_STATE(region_word(r, p));
        if (s == PS_FAULTING) { sched_yield(); continue; }
        if (s == PS_EMPTY) {
            int rc = resolve_first_touch(r, p, 1, true);
            uffd_wake(r->engine, r->base + p * PAGE, PAGE);
            if (rc < 0) return rc;
            continue;
        }
        p++;
    }
    return 0;
}
