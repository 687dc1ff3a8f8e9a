/* Device-private nodes, as the kernel's MEMORY_DEVICE_PRIVATE: pages resident there are not mapped in their
 * region (the CPU cannot reach the memory), so a CPU touch faults; the fault thread copies the page back to
 * the first CPU-reachable node of the private node's order with room (the host last) and wakes the toucher. */
#include <errno.h>
#include <string.h>
#include "internal.h"

int cdm_node_make_private(cdm_engine *e, int32_t node, const int8_t *order, uint32_t order_len) {
    if (engine_forked(e)) return CDM_E_FORKED;
    if (node <= CDM_HOST_NODE || node >= atomic_load(&e->node_count) || !order_valid(e, order, order_len, node)) return -EINVAL;
    for (uint32_t i = 0; i < order_len; i++)
        if (node_private(e, order[i])) return -EINVAL; /* pages come back to where the CPU reaches them */
    device_node *dn = &e->nodes[node];
    pthread_mutex_lock(&dn->pool.lock);
    bool used = dn->pool.used > 0;
    pthread_mutex_unlock(&dn->pool.lock);
    if (used && !dn->private_node) return -EBUSY;
    /* A new order for a private node (distances changed): the fault thread may read it half old, half new,
     * which is still an order of valid CPU-reachable nodes. */
    uint32_t len = order_len < dn->back_len ? dn->back_len : order_len;
    for (uint32_t i = 0; i < len; i++) dn->back_order[i] = order[i < order_len ? i : order_len - 1];
    dn->back_len = order_len;
    dn->private_node = true;
    return 0;
}

/* Publishes page p back on node `to` (frame, or 0 on the host) and gives the private frame back. */
static void publish_back(cdm_region *r, uint64_t p, int from, uint64_t from_frame, int to, uint64_t frame) {
    cdm_engine *e = r->engine;
    why_store(r, p, WHY_MAKE(CDM_WHY_CPU_FAULT, 0));
    region_store(r, p, PS_MAKE(PS_RESIDENT, to, frame));
    region_frames_free(r, from, from_frame, 1, NULL); /* its slot keeps the old copy, as a free frame's slot must hold a page */
    if (to == CDM_HOST_NODE) {
        atomic_fetch_sub(&r->device_pages, 1);
        atomic_fetch_add(&r->host_pages, 1);
        atomic_fetch_add(&e->host_pages, 1);
        group_charge(r, CDM_HOST_NODE, 1, NULL);
    }
    atomic_fetch_add(&e->st.private_faults, 1);
}

int private_bring_back(cdm_region *r, uint64_t p, uint64_t w) {
    cdm_engine *e = r->engine;
    int from = PS_NODE(w);
    uint64_t from_frame = PS_FRAME(w);
    if (!region_cas(r, p, &w, PS_WITH_STATE(w, PS_MIGRATING))) {
        /* Taken meanwhile: a migration holds it (and wakes its toucher), or it is mapped already. */
        unsigned s = PS_STATE(w);
        return s == PS_RESIDENT && !node_private(e, PS_NODE(w)) ? 1 : 0;
    }
    uint8_t *at = r->base + p * PAGE, *slot = frame_addr(e, from, from_frame);
    const device_node *dn = &e->nodes[from];
    for (uint32_t i = 0; i < dn->back_len; i++) {
        int to = dn->back_order[i];
        if (to == CDM_HOST_NODE) break;
        uint64_t got, frame = region_frames_alloc(r, to, 1, UINT64_MAX, &got, NULL, NULL);
        if (got == 0) continue;
        uint8_t *dst = frame_addr(e, to, frame);
        memcpy(dst, slot, PAGE);
        uint64_t moved;
        if (uffd_move(e, at, dst, PAGE, false, &moved) == 0) {
            publish_back(r, p, from, from_frame, to, frame);
            return 1;
        }
        region_frames_free(r, to, frame, 1, NULL); /* its slot still holds its page */
    }
    uint64_t copied;
    int rc = uffd_copy(e, at, slot, PAGE, false, &copied);
    if (rc == 0) {
        publish_back(r, p, from, from_frame, CDM_HOST_NODE, 0);
        return 1;
    }
    /* Nothing could take it: it stays where it was, and the toucher waits for a retry. */
    region_store(r, p, PS_WITH_STATE(w, PS_RESIDENT));
    atomic_fetch_add(&e->st.fill_errors, 1);
    return rc;
}
