/* Thin wrappers over the system calls the engine makes; each returns 0 or -errno, and each can be
 * failed on purpose by fault injection. */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define REQUIRED_FEATURES CDM_UFFD_FEATURE_MOVE

/* In a fork() child the descriptor still names the parent's address space: every ioctl would act on
 * the parent's memory. Refused, whatever the caller. */
static inline int refuse_in_child(cdm_engine *e) { return e && engine_forked(e) ? CDM_E_FORKED : 0; }

/* A descriptor from /dev/userfaultfd (full mode for whoever may open it), else from the syscall. */
static int open_descriptor(bool user_only, bool *from_device) {
    *from_device = false;
    if (!user_only) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) {
            int fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
            close(dev);
            if (fd >= 0) {
                *from_device = true;
                return fd;
            }
        }
    }
    return (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | (user_only ? UFFD_USER_MODE_ONLY : 0));
}

int uffd_open(uint32_t flags, uint32_t *mode, uint64_t *missing) {
    *mode = 0;
    *missing = 0;
    bool user_only = flags & CDM_CREATE_USER_MODE_ONLY, from_device;
    int fd = open_descriptor(user_only, &from_device);
    /* Without privilege the kernel grants only user-mode-only descriptors (vm.unprivileged_userfaultfd=0). */
    if (fd < 0 && !user_only && (errno == EPERM || errno == EACCES)) {
        user_only = true;
        fd = open_descriptor(true, &from_device);
    }
    if (fd < 0) return CDM_E_NO_USERFAULTFD;
    if (user_only) *mode |= CDM_MODE_USER_ONLY;
    if (from_device) *mode |= CDM_MODE_DEV_USERFAULTFD;
    struct uffdio_api api = {.api = UFFD_API, .features = REQUIRED_FEATURES};
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        /* The handshake fails as a whole when a feature is unknown: ask again for what there is. */
        close(fd);
        fd = open_descriptor(user_only, &from_device);
        struct uffdio_api probe = {.api = UFFD_API, .features = 0};
        bool known = fd >= 0 && ioctl(fd, UFFDIO_API, &probe) == 0;
        if (fd >= 0) close(fd);
        if (!known) return CDM_E_NO_USERFAULTFD;
        *missing = REQUIRED_FEATURES & ~probe.features;
        return CDM_E_MISSING_FEATURE;
    }
    return fd;
}

int uffd_register(cdm_engine *e, void *addr, uint64_t len) {
    int rc = refuse_in_child(e);
    if (!rc) rc = inject_check(e, CDM_OP_REGISTER);
    if (rc) return rc;
    struct uffdio_register reg = {.range = {.start = (uint64_t)addr, .len = len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    return ioctl(e->uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int uffd_unregister(cdm_engine *e, void *addr, uint64_t len) {
    if (refuse_in_child(e)) return CDM_E_FORKED;
    struct uffdio_range range = {.start = (uint64_t)addr, .len = len};
    return ioctl(e->uffd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

int uffd_zeropage(cdm_engine *e, void *addr, uint64_t len, bool wake, uint64_t *done) {
    *done = 0;
    int rc = refuse_in_child(e);
    if (!rc) rc = inject_check(e, CDM_OP_ZEROPAGE);
    if (rc) return rc;
    struct uffdio_zeropage z = {.range = {.start = (uint64_t)addr, .len = len}, .mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE};
    rc = ioctl(e->uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
    *done = rc == 0 ? len : z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
    return rc;
}

int uffd_copy(cdm_engine *e, void *dst, const void *src, uint64_t len, bool wake, uint64_t *done) {
    *done = 0;
    int rc = refuse_in_child(e);
    if (!rc) rc = inject_check(e, CDM_OP_COPY);
    if (rc) return rc;
    struct uffdio_copy c = {.dst = (uint64_t)dst, .src = (uint64_t)src, .len = len, .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE};
    rc = ioctl(e->uffd, UFFDIO_COPY, &c) < 0 ? -errno : 0;
    *done = rc == 0 ? len : c.copy > 0 ? (uint64_t)c.copy : 0;
    return rc;
}

int uffd_move(cdm_engine *e, void *dst, void *src, uint64_t len, bool wake, uint64_t *done) {
    *done = 0;
    int rc = refuse_in_child(e);
    if (!rc) rc = inject_check(e, CDM_OP_MOVE);
    if (rc) return rc;
    struct uffdio_move m = {.dst = (uint64_t)dst, .src = (uint64_t)src, .len = len,
                            .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE};
    rc = ioctl(e->uffd, UFFDIO_MOVE, &m) < 0 ? -errno : 0;
    *done = rc == 0 ? len : m.move > 0 ? (uint64_t)m.move : 0;
    return rc;
}

int uffd_wake(cdm_engine *e, void *addr, uint64_t len) {
    int rc = refuse_in_child(e);
    if (!rc) rc = inject_check(e, CDM_OP_WAKE);
    if (rc) return rc;
    struct uffdio_range range = {.start = (uint64_t)addr, .len = len};
    return ioctl(e->uffd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}

int sys_madvise(cdm_engine *e, void *addr, uint64_t len, int advice) {
    int rc = inject_check(e, CDM_OP_MADVISE);
    if (rc) return rc;
    return madvise(addr, len, advice) < 0 ? -errno : 0;
}

/* Anonymous private memory, reserved without commitment; MAP_FAILED with errno set on failure. */
void *sys_mmap(cdm_engine *e, uint64_t len, int extra_flags) {
    int rc = inject_check(e, CDM_OP_MMAP);
    if (rc) {
        errno = -rc;
        return MAP_FAILED;
    }
    return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
}

/* The /proc/self/pagemap entry of the page at addr (bit 63 present, bit 56 mapped exclusively);
 * false when it cannot be read. */
bool pagemap_read(cdm_engine *e, const void *addr, uint64_t *entry) {
    return e->pagemap_fd >= 0 && pread(e->pagemap_fd, entry, sizeof *entry, (off_t)((uint64_t)addr / PAGE * 8)) == 8;
}

/* Locks pages as they fault in: UFFDIO_MOVE needs both sides locked or neither. */
int sys_lock_on_fault(cdm_engine *e, void *addr, uint64_t len) {
    int rc = inject_check(e, CDM_OP_MLOCK);
    if (rc) return rc;
    return syscall(SYS_mlock2, addr, len, MLOCK_ONFAULT) < 0 ? -errno : 0;
}
