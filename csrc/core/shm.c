/* shm.c — POSIX shared-memory segments; see shm.h for the contract.
 *
 * Design: shm_open + ftruncate + mmap(MAP_SHARED); the fd is closed right after mapping (the
 * mapping keeps the object alive).  shm_open/shm_unlink live in libc on glibc >= 2.34, so no
 * -lrt.  Stale reclaim reads headers with pread (tmpfs fds support it) instead of mapping.
 */
#include "core/shm.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static_assert(ATOMIC_INT_LOCK_FREE == 2, "cross-process atomics need lock-free 32-bit atomics");
static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "cross-process atomics need lock-free 64-bit atomics");
static_assert(sizeof(_Atomic uint32_t) == 4 && sizeof(_Atomic uint64_t) == 8, "atomic sizes");
static_assert(sizeof(shm_header) == 64, "shm_header is 64 bytes");
static_assert(offsetof(shm_header, ready) == 48, "shm_header layout");

#define SHM_DEV_DIR "/dev/shm"

int64_t shm_now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int shm_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

static status_t shm_check_part(const char *field, const char *s)
{
    if (s == NULL || s[0] == '\0') return status_set(STATUS_INVALID_ARG, "shm %s must not be empty", field);
    size_t n = strlen(s);
    if (n > SHM_PART_MAX_CHARS)
        return status_set(STATUS_INVALID_ARG, "shm %s must be at most %d characters, got %zu", field,
                          SHM_PART_MAX_CHARS, n);
    for (size_t i = 0; i < n; i++)
        if (!shm_is_name_char(s[i]))
            return status_set(STATUS_INVALID_ARG, "shm %s may use only [A-Za-z0-9_.], got '%s'", field, s);
    return STATUS_OK;
}

status_t shm_make_name(char *out, size_t cap, const char *server_id, const char *what)
{
    STATUS_TRY(shm_check_part("server_id", server_id));
    STATUS_TRY(shm_check_part("segment kind name", what));
    int n = snprintf(out, cap, "/" SHM_NAME_PREFIX "%s-%s", server_id, what);
    if (n < 0 || (size_t)n >= cap)
        return status_set(STATUS_INVALID_ARG, "shm name buffer too small (%zu bytes)", cap);
    return STATUS_OK;
}

/* A name for shm_open: "/" then 1..NAME_MAX-? characters without '/'. */
static status_t shm_check_name(const char *name)
{
    if (name == NULL || name[0] != '/' || name[1] == '\0')
        return status_set(STATUS_INVALID_ARG, "shm segment name must start with '/', got '%s'", name ? name : "(null)");
    size_t n = strlen(name);
    if (n >= SHM_NAME_MAX_CHARS)
        return status_set(STATUS_INVALID_ARG, "shm segment name '%s' is longer than %d characters", name,
                          SHM_NAME_MAX_CHARS - 1);
    if (strchr(name + 1, '/') != NULL)
        return status_set(STATUS_INVALID_ARG, "shm segment name '%s' must not contain '/' after the first", name);
    return STATUS_OK;
}

static status_t shm_errno_status(int err, const char *what, const char *name)
{
    return status_set(err == ENOENT ? STATUS_NOT_FOUND : STATUS_IO, "shared memory segment %s: %s failed: %s", name,
                      what, strerror(err));
}

status_t shm_create_segment(shm_segment *seg, const char *name, size_t total_bytes, uint32_t kind,
                    uint32_t layout_version)
{
    memset(seg, 0, sizeof(*seg));
    STATUS_TRY(shm_check_name(name));
    if (total_bytes < sizeof(shm_header))
        return status_set(STATUS_INVALID_ARG, "shm segment %s: total_bytes %zu is smaller than the %zu-byte header",
                          name, total_bytes, sizeof(shm_header));
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
        int err = errno;
        if (err == EEXIST)
            return status_set(STATUS_IO, "shared memory segment %s: create failed: %s (another server with this id, "
                              "or a crashed run: reclaim stale segments)", name, strerror(err));
        return shm_errno_status(err, "create", name);
    }
    if (ftruncate(fd, (off_t)total_bytes) != 0) {
        int err = errno;
        close(fd);
        shm_unlink(name);
        return shm_errno_status(err, "ftruncate", name);
    }
    /* Reserve the pages now: tmpfs is sparse, and running out of /dev/shm later would be a
     * SIGBUS on first touch instead of an error here. */
    int err = posix_fallocate(fd, 0, (off_t)total_bytes);
    if (err != 0 && err != EOPNOTSUPP && err != EINVAL) {
        close(fd);
        shm_unlink(name);
        return status_set(STATUS_IO, "shared memory segment %s: reserving %zu bytes failed: %s (is /dev/shm large "
                          "enough? in docker raise --shm-size)", name, total_bytes, strerror(err));
    }
    void *base = mmap(NULL, total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int map_err = errno;
    close(fd);
    if (base == MAP_FAILED) {
        shm_unlink(name);
        return shm_errno_status(map_err, "mmap", name);
    }
    shm_header *h = base;
    h->kind = kind;
    h->layout_version = layout_version;
    h->header_bytes = sizeof(shm_header);
    h->total_bytes = total_bytes;
    h->creator_pid = (int64_t)getpid();
    h->created_unix_ms = shm_now_unix_ms();
    atomic_store_explicit(&h->ready, 0, memory_order_relaxed);
    h->magic = SHM_MAGIC;
    snprintf(seg->name, sizeof seg->name, "%s", name);
    seg->base = base;
    seg->total_bytes = total_bytes;
    return STATUS_OK;
}

void shm_mark_ready(shm_segment *seg)
{
    atomic_store_explicit(&shm_get_header(seg)->ready, 1, memory_order_release);
}

static const char *shm_kind_name(uint32_t kind)
{
    switch (kind) {
    case SHM_KIND_TEST: return "test";
    case SHM_KIND_REQ_POOL: return "request pool";
    case SHM_KIND_IO_BUFFER: return "io buffer";
    }
    return "unknown";
}

/* The header checks of shm_attach_segment; `size` is the object's size. */
static status_t shm_check_header(const char *name, const shm_header *h, uint64_t size, uint32_t kind,
                                 uint32_t layout_version)
{
    if (h->magic != SHM_MAGIC)
        return status_set(STATUS_FORMAT, "shared memory segment %s: bad magic 0x%016llx (expected 0x%016llx): "
                          "not a lightllm segment", name, (unsigned long long)h->magic,
                          (unsigned long long)SHM_MAGIC);
    if (h->kind != kind)
        return status_set(STATUS_FORMAT, "shared memory segment %s: is a %s segment (kind %u), expected a %s segment",
                          name, shm_kind_name(h->kind), h->kind, shm_kind_name(kind));
    if (h->layout_version != layout_version)
        return status_set(STATUS_FORMAT, "shared memory segment %s: layout version %u, this build expects %u "
                          "(server and client from different builds?)", name, h->layout_version, layout_version);
    if (h->header_bytes != sizeof(shm_header) || h->total_bytes != size)
        return status_set(STATUS_FORMAT, "shared memory segment %s: header says %llu bytes (header %llu), the segment "
                          "has %llu", name, (unsigned long long)h->total_bytes, (unsigned long long)h->header_bytes,
                          (unsigned long long)size);
    return STATUS_OK;
}

status_t shm_attach_segment(shm_segment *seg, const char *name, uint32_t kind, uint32_t layout_version)
{
    memset(seg, 0, sizeof(*seg));
    STATUS_TRY(shm_check_name(name));
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) return shm_errno_status(errno, "open", name);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return shm_errno_status(err, "fstat", name);
    }
    if ((uint64_t)st.st_size < sizeof(shm_header)) {
        close(fd);
        return status_set(STATUS_FORMAT, "shared memory segment %s: %lld bytes, too small for the %zu-byte header "
                          "(not initialised, or not a lightllm segment)", name, (long long)st.st_size,
                          sizeof(shm_header));
    }
    size_t size = (size_t)st.st_size;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int map_err = errno;
    close(fd);
    if (base == MAP_FAILED) return shm_errno_status(map_err, "mmap", name);
    shm_header *h = base;
    status_t st_check = shm_check_header(name, h, size, kind, layout_version);
    if (st_check == STATUS_OK && atomic_load_explicit(&h->ready, memory_order_acquire) != 1)
        st_check = status_set(STATUS_FORMAT, "shared memory segment %s: not initialised yet (its creator, pid %lld, "
                              "is starting or died while creating it)", name, (long long)h->creator_pid);
    if (st_check != STATUS_OK) {
        munmap(base, size);
        return st_check;
    }
    snprintf(seg->name, sizeof seg->name, "%s", name);
    seg->base = base;
    seg->total_bytes = size;
    return STATUS_OK;
}

void shm_detach_segment(shm_segment *seg)
{
    if (seg->base != NULL) munmap(seg->base, seg->total_bytes);
    seg->base = NULL;
    seg->total_bytes = 0;
}

status_t shm_unlink_segment(const char *name)
{
    STATUS_TRY(shm_check_name(name));
    if (shm_unlink(name) != 0) return shm_errno_status(errno, "unlink", name);
    return STATUS_OK;
}

static status_t shm_check_prefix(const char **prefix)
{
    if (*prefix == NULL) *prefix = SHM_NAME_PREFIX;
    if (strncmp(*prefix, SHM_NAME_PREFIX, strlen(SHM_NAME_PREFIX)) != 0 || strchr(*prefix, '/') != NULL)
        return status_set(STATUS_INVALID_ARG, "shm prefix must start with '%s' and contain no '/', got '%s'",
                          SHM_NAME_PREFIX, *prefix);
    return STATUS_OK;
}

/* 1 when segment `name` ("/" + a file under /dev/shm) holds a lightllm header whose creator is gone. */
static int shm_is_stale(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) return 0;
    shm_header h;
    ssize_t n = pread(fd, &h, sizeof h, 0);
    close(fd);
    if (n != (ssize_t)sizeof h || h.magic != SHM_MAGIC || h.creator_pid <= 0) return 0;
    return kill((pid_t)h.creator_pid, 0) != 0 && errno == ESRCH;
}

status_t shm_reclaim_stale(const char *prefix, int32_t *out_num_reclaimed)
{
    *out_num_reclaimed = 0;
    STATUS_TRY(shm_check_prefix(&prefix));
    DIR *dir = opendir(SHM_DEV_DIR);
    if (dir == NULL) return status_set(STATUS_IO, "cannot list %s: %s", SHM_DEV_DIR, strerror(errno));
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        char name[NAME_MAX + 2];
        snprintf(name, sizeof name, "/%s", e->d_name);
        if (!shm_is_stale(name)) continue;
        if (shm_unlink(name) == 0) (*out_num_reclaimed)++;
    }
    closedir(dir);
    return STATUS_OK;
}

status_t shm_count_segments(const char *prefix, int32_t *out_count)
{
    *out_count = 0;
    STATUS_TRY(shm_check_prefix(&prefix));
    DIR *dir = opendir(SHM_DEV_DIR);
    if (dir == NULL) return status_set(STATUS_IO, "cannot list %s: %s", SHM_DEV_DIR, strerror(errno));
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (strncmp(e->d_name, prefix, plen) == 0) (*out_count)++;
    closedir(dir);
    return STATUS_OK;
}
