/* Thin wrappers over the userfaultfd ioctls; each returns 0 or -errno. */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* Features every region relies on: missing faults and write protection on shmem (memfd) mappings. */
#define REQUIRED_FEATURES (UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM)

int uffd_open(uint32_t *mode, uint64_t *missing) {
    *mode = 0;
    *missing = 0;
    /* Full mode first (faults inside system calls wait); without privilege the kernel only grants
     * user-mode-only descriptors (vm.unprivileged_userfaultfd=0). */
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && (errno == EPERM || errno == EACCES)) {
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
        if (fd >= 0) *mode |= CDM_MODE_USER_ONLY;
    }
    if (fd < 0) return CDM_E_NO_USERFAULTFD;
    struct uffdio_api probe = {.api = UFFD_API, .features = 0};
    if (ioctl(fd, UFFDIO_API, &probe) < 0) {
        close(fd);
        return CDM_E_NO_USERFAULTFD;
    }
    if ((probe.features & REQUIRED_FEATURES) != REQUIRED_FEATURES) {
        *missing = REQUIRED_FEATURES & ~probe.features;
        close(fd);
        return CDM_E_MISSING_FEATURE;
    }
    /* A descriptor takes UFFDIO_API once: open a fresh one with the features enabled. */
    close(fd);
    fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | ((*mode & CDM_MODE_USER_ONLY) ? UFFD_USER_MODE_ONLY : 0));
    if (fd < 0) return CDM_E_NO_USERFAULTFD;
    struct uffdio_api api = {.api = UFFD_API, .features = REQUIRED_FEATURES};
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        close(fd);
        return CDM_E_MISSING_FEATURE;
    }
    return fd;
}

int uffd_register(int uffd, void *addr, uint64_t len) {
    struct uffdio_register reg = {
        .range = {.start = (uint64_t)addr, .len = len},
        .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
    };
    return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int uffd_unregister(int uffd, void *addr, uint64_t len) {
    struct uffdio_range range = {.start = (uint64_t)addr, .len = len};
    return ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

int uffd_zeropage(int uffd, void *addr, uint64_t len, uint64_t *done) {
    struct uffdio_zeropage z = {.range = {.start = (uint64_t)addr, .len = len}, .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};
    int rc = ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
    *done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
    return rc;
}

/* The kernel refuses DONTWAKE together with WP: protecting never wakes anyway. */
int uffd_write_protect(int uffd, void *addr, uint64_t len, bool protect, bool wake) {
    struct uffdio_writeprotect wp = {
        .range = {.start = (uint64_t)addr, .len = len},
        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
    };
    return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

int uffd_wake(int uffd, void *addr, uint64_t len) {
    struct uffdio_range range = {.start = (uint64_t)addr, .len = len};
    return ioctl(uffd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}
