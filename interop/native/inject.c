/* Test-only fault injection: fail chosen system calls with a chosen errno at chosen counts. Disarmed,
 * each wrapper pays one relaxed load. */
#include <errno.h>
#include "internal.h"

int cdm_inject(cdm_engine *e, int32_t op, int32_t err, uint32_t skip, uint32_t times) {
    if (op < 0 || op >= CDM_OP_COUNT || err <= 0) return -EINVAL;
    inject_slot *s = &e->inject[op];
    atomic_store(&s->times, 0);
    s->err = err;
    atomic_store(&s->skip, skip);
    atomic_store(&s->times, times);
    bool armed = false;
    for (int i = 0; i < CDM_OP_COUNT; i++) armed |= atomic_load(&e->inject[i].times) > 0;
    atomic_store(&e->inject_armed, armed);
    return 0;
}

/* 0, or the -errno this call of op must fail with. */
int inject_check(cdm_engine *e, int op) {
    if (!e || !atomic_load_explicit(&e->inject_armed, memory_order_relaxed)) return 0;
    inject_slot *s = &e->inject[op];
    for (;;) {
        uint32_t skip = atomic_load(&s->skip);
        if (skip == 0) break;
        if (atomic_compare_exchange_weak(&s->skip, &skip, skip - 1)) return 0;
    }
    for (;;) {
        uint32_t times = atomic_load(&s->times);
        if (times == 0) return 0;
        if (atomic_compare_exchange_weak(&s->times, &times, times - 1)) return -s->err;
    }
}
