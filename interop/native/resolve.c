/* First-touch resolution and the native fault-service loop. Nothing here ever calls managed code. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

static inline int empty_target(const cdm_region *r, uint64_t w) {
    int n = PS_NODE(w);
    return n ? n - 1 : r->placement;
}

/* Maps device frames for claimed pages [s, s+n); returns how many pages got device frames. */
static uint64_t resolve_on_device(cdm_region *r, uint64_t s, uint64_t n, int node) {
    cdm_engine *e = r->engine;
    device_node *dn = &e->nodes[node];
    uint64_t done = 0;
    pthread_mutex_lock(&r->remap_lock);
    while (done < n) {
        uint64_t p = s + done, hint = UINT64_MAX, got;
        if (p > 0) {
            uint64_t prev = region_word(r, p - 1);
            if (PS_STATE(prev) >= PS_RESIDENT && PS_NODE(prev) == node) hint = PS_FRAME(prev) + 1;
        }
        uint64_t frame = pool_alloc(&dn->pool, n - done, hint, &got);
        if (got == 0) break;
        int64_t delta = pieces_delta(r, p, got, device_piece_key(node, frame, p));
        if (delta > 0 && !budget_take(e, delta)) {
            pool_free(&dn->pool, frame, got);
            atomic_fetch_add(&e->st.budget_refusals, 1);
            break;
        }
        /* Frames are reused: a first touch must read zeros, as on the host. */
        memset(dn->view + frame * PAGE, 0, got * PAGE);
        if (map_backing(r, p, got, node, frame, false) < 0) {
            pool_free(&dn->pool, frame, got);
            if (delta > 0) budget_take(e, -delta);
            map_backing(r, p, got, CDM_HOST_NODE, 0, false);
            break;
        }
        if (delta < 0) budget_take(e, delta);
        r->pieces += delta;
        for (uint64_t k = 0; k < got; k++) region_store(r, p + k, PS_MAKE(PS_RESIDENT, node, frame + k));
        atomic_fetch_add(&r->device_pages, got);
        atomic_fetch_add(&e->st.first_touch_device, got);
        done += got;
    }
    pthread_mutex_unlock(&r->remap_lock);
    return done;
}

/* Fills claimed pages [s, s+n) with zero pages of the host memfd. */
static void resolve_on_host(cdm_region *r, uint64_t s, uint64_t n) {
    cdm_engine *e = r->engine;
    uint64_t p = s, end = s + n;
    while (p < end) {
        uint64_t done = 0, chunk = end - p;
        int rc = uffd_zeropage(e->uffd, r->base + p * PAGE, chunk * PAGE, &done);
        done /= PAGE;
        if (rc == -EAGAIN) continue;
        if (rc == -EEXIST) done++; /* that page is already present: it is resident as it is */
        else if (rc < 0 && done == 0) done = 1; /* unregistered (region going away): give up on this page */
        for (uint64_t k = 0; k < done && p + k < end; k++) region_store(r, p + k, PS_MAKE(PS_RESIDENT, CDM_HOST_NODE, 0));
        atomic_fetch_add(&e->st.zero_filled, done);
        atomic_fetch_add(&r->host_pages, done);
        atomic_fetch_add(&e->host_pages, done);
        p += done;
    }
}

static void resolve_run(cdm_region *r, uint64_t s, uint64_t n, int target) {
    uint64_t on_device = 0;
    if (target != CDM_HOST_NODE) {
        on_device = resolve_on_device(r, s, n, target);
        if (on_device < n) atomic_fetch_add(&r->engine->st.fallbacks, n - on_device);
    }
    if (on_device < n) resolve_on_host(r, s + on_device, n - on_device);
}

/* Resolves every untouched page of [first, first+count), each on its placement node. */
void resolve_first_touch(cdm_region *r, uint64_t first, uint64_t count) {
    uint64_t p = first, end = first + count;
    while (p < end) {
        uint64_t w = region_word(r, p);
        if (PS_STATE(w) != PS_EMPTY) { p++; continue; }
        int target = empty_target(r, w);
        uint64_t q = p;
        while (q < end) {
            uint64_t wq = region_word(r, q);
            if (PS_STATE(wq) != PS_EMPTY || empty_target(r, wq) != target) break;
            if (!region_cas(r, q, &wq, PS_MAKE(PS_FAULTING, 0, 0))) break;
            q++;
        }
        if (q == p) continue; /* lost a race for p: look at it again */
        resolve_run(r, p, q - p, target);
        p = q;
    }
}

/* Waits for another resolver (a populate call) to finish a page; resolution is native and short. */
static void wait_not_faulting(cdm_region *r, uint64_t p) {
    while (PS_STATE(region_word(r, p)) == PS_FAULTING) sched_yield();
}

static void handle_write_protect(cdm_engine *e, cdm_region *r, uint64_t p) {
    void *addr = r->base + p * PAGE;
    atomic_fetch_add(&e->st.faults_wp, 1);
    for (;;) {
        uint64_t w = region_word(r, p);
        switch (PS_STATE(w)) {
        case PS_MIGRATING:
            /* Never hold a writer for a migration: abort this page's migration and let it write. */
            if (!region_cas(r, p, &w, PS_WITH_STATE(w, PS_ABORTING))) continue;
            uffd_write_protect(e->uffd, addr, PAGE, false, true);
            region_store(r, p, PS_WITH_STATE(w, PS_ABORTED));
            atomic_fetch_add(&e->st.aborted, 1);
            return;
        case PS_RESIDENT:
            /* A leftover protection. Own the word while clearing it, so that a migration starting now
             * cannot have its fresh protection cleared by this stale event. */
            if (!region_cas(r, p, &w, PS_WITH_STATE(w, PS_ABORTING))) continue;
            uffd_write_protect(e->uffd, addr, PAGE, false, true);
            region_store(r, p, w);
            return;
        case PS_COMMITTING:
            return; /* the committer holds it inside one native call and wakes it after the remap */
        default:
            uffd_wake(e->uffd, addr, PAGE); /* already unprotected by whoever owns the word */
            return;
        }
    }
}

/* Pages a readahead worker resolves at a time. */
#define READAHEAD_STEP 64

static void handle_missing(cdm_engine *e, cdm_region *r, uint64_t p) {
    atomic_fetch_add(&e->st.faults_missing, 1);
    uint64_t fa = r->fault_around;
    uint64_t ws = p - p % fa, wn = ws + fa > r->pages ? r->pages - ws : fa;
    resolve_first_touch(r, ws, wn);
    wait_not_faulting(r, p);
    uffd_wake(e->uffd, r->base + ws * PAGE, wn * PAGE);
    /* A first touch right after resident pages looks sequential: resolve ahead of it on the readahead
     * thread, so the toucher stops waiting a round trip per window (as the kernel's readahead does). */
    if (r->readahead && ws > 0 && PS_STATE(region_word(r, ws - 1)) != PS_EMPTY && ws + wn < r->pages) {
        pthread_mutex_lock(&e->ahead.lock);
        e->ahead.region = r;
        e->ahead.next = ws + wn;
        e->ahead.end = ws + wn + r->readahead < r->pages ? ws + wn + r->readahead : r->pages;
        pthread_cond_signal(&e->ahead.wake);
        pthread_mutex_unlock(&e->ahead.lock);
    }
}

/* Takes and resolves the next step of the open stream; false when there is none. The caller holds
 * regions_lock, which keeps the region alive: destroy forgets the stream under the write lock. */
static bool readahead_step(cdm_engine *e) {
    pthread_mutex_lock(&e->ahead.lock);
    cdm_region *r = e->ahead.region;
    uint64_t first = e->ahead.next, count = 0;
    if (r) {
        count = e->ahead.end - first < READAHEAD_STEP ? e->ahead.end - first : READAHEAD_STEP;
        e->ahead.next += count;
        if (e->ahead.next >= e->ahead.end) e->ahead.region = NULL;
    }
    pthread_mutex_unlock(&e->ahead.lock);
    if (!r) return false;
    resolve_first_touch(r, first, count);
    atomic_fetch_add(&e->st.readahead, count);
    return true;
}

/* The fault thread's share of readahead, between events. */
static void readahead_once(cdm_engine *e) {
    pthread_rwlock_rdlock(&e->regions_lock);
    readahead_step(e);
    pthread_rwlock_unlock(&e->regions_lock);
}

void *readahead_loop(void *arg) {
    cdm_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->ahead.lock);
        while (!e->ahead.region && !e->ahead.stopping) pthread_cond_wait(&e->ahead.wake, &e->ahead.lock);
        bool stopping = e->ahead.stopping;
        pthread_mutex_unlock(&e->ahead.lock);
        if (stopping) return NULL;
        pthread_rwlock_rdlock(&e->regions_lock);
        while (readahead_step(e)) {}
        pthread_rwlock_unlock(&e->regions_lock);
    }
}

/* Called by region destroy with regions_lock held for writing. */
void readahead_forget(cdm_engine *e, cdm_region *r) {
    pthread_mutex_lock(&e->ahead.lock);
    if (e->ahead.region == r) e->ahead.region = NULL;
    pthread_mutex_unlock(&e->ahead.lock);
}

void handle_fault(cdm_engine *e, uint64_t addr, uint64_t flags) {
    addr &= ~(uint64_t)(PAGE - 1);
    pthread_rwlock_rdlock(&e->regions_lock);
    cdm_region *r = engine_find_region(e, addr);
    if (!r) {
        /* Its region was destroyed after the fault was queued; unregistering already woke it. */
        pthread_rwlock_unlock(&e->regions_lock);
        return;
    }
    uint64_t p = (addr - (uint64_t)r->base) / PAGE;
    if (flags & UFFD_PAGEFAULT_FLAG_WP) handle_write_protect(e, r, p);
    else handle_missing(e, r, p);
    pthread_rwlock_unlock(&e->regions_lock);
}

void *fault_loop(void *arg) {
    cdm_engine *e = arg;
    struct uffd_msg msgs[64];
    struct pollfd fds[2] = {{.fd = e->uffd, .events = POLLIN}, {.fd = e->stop_fd, .events = POLLIN}};
    for (;;) {
        /* While a readahead stream is open this thread works on it too, between events: faults first. */
        pthread_mutex_lock(&e->ahead.lock);
        bool ahead = e->ahead.region != NULL;
        pthread_mutex_unlock(&e->ahead.lock);
        int ready = poll(fds, 2, ahead ? 0 : -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (fds[1].revents) break;
        if (ready == 0) {
            readahead_once(e);
            continue;
        }
        ssize_t n = read(e->uffd, msgs, sizeof msgs);
        if (n < 0) continue; /* EAGAIN: another wake-up took the events */
        for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++)
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
                handle_fault(e, msgs[i].arg.pagefault.address, msgs[i].arg.pagefault.flags);
    }
    return NULL;
}

int cdm_region_populate(cdm_region *r, uint64_t first, uint64_t count) {
    if (first > r->pages || count > r->pages - first) return -EINVAL;
    resolve_first_touch(r, first, count);
    for (uint64_t p = first; p < first + count; p++) wait_not_faulting(r, p);
    uffd_wake(r->engine->uffd, r->base + first * PAGE, count * PAGE);
    return 0;
}
