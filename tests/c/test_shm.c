/* test_shm.c — core/shm: names, create/attach/detach/unlink, the header checks (bad magic,
 * kind, layout version, size, not-ready → STATUS_FORMAT with a clear message), stale reclaim
 * of a segment left by a dead child, and that nothing is left in /dev/shm.  Every segment is
 * named "/lightllm-ut<pid>-<what>" and every test ends by checking that prefix is gone. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/shm.h"
#include "test_shm_util.h"
#include "test_util.h"

TEST_CASE(shm_make_name_checks)
{
    char name[SHM_NAME_MAX_CHARS];
    CHECK_EQ_INT(shm_make_name(name, sizeof name, "1234x9f", "reqs"), STATUS_OK);
    CHECK(strcmp(name, "/lightllm-1234x9f-reqs") == 0);
    CHECK_EQ_INT(shm_make_name(name, sizeof name, "", "reqs"), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "server_id") != NULL);
    CHECK_EQ_INT(shm_make_name(name, sizeof name, "a-b", "reqs"), STATUS_INVALID_ARG);
    CHECK(strstr(status_message(), "a-b") != NULL);
    CHECK_EQ_INT(shm_make_name(name, sizeof name, "ab", "x/y"), STATUS_INVALID_ARG);
    char longid[SHM_PART_MAX_CHARS + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    CHECK_EQ_INT(shm_make_name(name, sizeof name, longid, "reqs"), STATUS_INVALID_ARG);
    char small[8];
    CHECK_EQ_INT(shm_make_name(small, sizeof small, "ab", "reqs"), STATUS_INVALID_ARG);
    /* names that shm_open would reject */
    shm_segment seg;
    CHECK_EQ_INT(shm_create_segment(&seg, "no-slash", 4096, SHM_KIND_TEST, 1), STATUS_INVALID_ARG);
    CHECK_EQ_INT(shm_attach_segment(&seg, "/a/b", SHM_KIND_TEST, 1), STATUS_INVALID_ARG);
    int32_t n;
    CHECK_EQ_INT(shm_reclaim_stale("other-", &n), STATUS_INVALID_ARG);
    CHECK_EQ_INT(shm_count_segments("lightllm/x", &n), STATUS_INVALID_ARG);
}

TEST_CASE(shm_create_attach_unlink)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "basic");
    int64_t before_ms = shm_now_unix_ms();
    shm_segment a, b;
    CHECK_EQ_INT(shm_create_segment(&a, name, 8192, SHM_KIND_TEST, 7), STATUS_OK);
    shm_header *h = shm_get_header(&a);
    CHECK(h->magic == SHM_MAGIC);
    CHECK_EQ_INT(h->kind, SHM_KIND_TEST);
    CHECK_EQ_INT(h->layout_version, 7);
    CHECK_EQ_INT(h->total_bytes, 8192);
    CHECK_EQ_INT(h->header_bytes, sizeof(shm_header));
    CHECK_EQ_INT(h->creator_pid, getpid());
    CHECK(h->created_unix_ms >= before_ms && h->created_unix_ms <= shm_now_unix_ms());
    /* the body is zero-filled */
    const uint8_t *body = (const uint8_t *)a.base + sizeof(shm_header);
    int nonzero = 0;
    for (size_t i = 0; i < 8192 - sizeof(shm_header); i++) nonzero += body[i] != 0;
    CHECK_EQ_INT(nonzero, 0);
    /* not ready yet: attach refuses */
    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_TEST, 7), STATUS_FORMAT);
    CHECK(strstr(status_message(), "not initialised") != NULL);
    CHECK(b.base == NULL);
    shm_mark_ready(&a);
    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_TEST, 7), STATUS_OK);
    CHECK_EQ_INT(b.total_bytes, 8192);
    CHECK(strcmp(b.name, name) == 0);
    /* two mappings of one object */
    ((uint8_t *)a.base)[5000] = 0xAB;
    CHECK_EQ_INT(((uint8_t *)b.base)[5000], 0xAB);
    CHECK_EQ_INT(test_shm_leftovers(), 1);
    /* a second create of the name fails and leaves the first alone */
    shm_segment c;
    CHECK_EQ_INT(shm_create_segment(&c, name, 4096, SHM_KIND_TEST, 7), STATUS_IO);
    CHECK(strstr(status_message(), name) != NULL);
    CHECK(strstr(status_message(), "exists") != NULL);
    CHECK_EQ_INT(((uint8_t *)b.base)[5000], 0xAB);
    /* unlink: the mappings stay valid, the name is gone */
    CHECK_EQ_INT(shm_unlink_segment(name), STATUS_OK);
    CHECK_EQ_INT(((uint8_t *)b.base)[5000], 0xAB);
    CHECK_EQ_INT(shm_unlink_segment(name), STATUS_NOT_FOUND);
    CHECK_EQ_INT(shm_attach_segment(&c, name, SHM_KIND_TEST, 7), STATUS_NOT_FOUND);
    CHECK(strstr(status_message(), name) != NULL);
    shm_detach_segment(&a);
    shm_detach_segment(&b);
    shm_detach_segment(&b); /* twice is fine */
    CHECK(a.base == NULL);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_attach_header_checks)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "hdr");
    shm_segment a, b;
    CHECK_EQ_INT(shm_create_segment(&a, name, 4096, SHM_KIND_TEST, 3), STATUS_OK);
    shm_mark_ready(&a);
    shm_header *h = shm_get_header(&a);

    h->magic = 0x1234;
    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_TEST, 3), STATUS_FORMAT);
    CHECK(strstr(status_message(), "magic") != NULL);
    CHECK(strstr(status_message(), "not a lightllm segment") != NULL);
    CHECK(strstr(status_message(), name) != NULL);
    h->magic = SHM_MAGIC;

    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_TEST, 4), STATUS_FORMAT);
    CHECK(strstr(status_message(), "layout version 3, this build expects 4") != NULL);

    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_REQ_POOL, 3), STATUS_FORMAT);
    CHECK(strstr(status_message(), "expected a request pool segment") != NULL);

    h->total_bytes = 8192;
    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_TEST, 3), STATUS_FORMAT);
    CHECK(strstr(status_message(), "8192") != NULL);
    h->total_bytes = 4096;

    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_TEST, 3), STATUS_OK);
    shm_detach_segment(&b);
    shm_detach_segment(&a);
    CHECK_EQ_INT(shm_unlink_segment(name), STATUS_OK);

    /* an object too small to hold a header (a foreign or half-created segment) */
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    CHECK_EQ_INT(ftruncate(fd, 10), 0);
    close(fd);
    CHECK_EQ_INT(shm_attach_segment(&b, name, SHM_KIND_TEST, 3), STATUS_FORMAT);
    CHECK(strstr(status_message(), "too small") != NULL);
    CHECK_EQ_INT(shm_unlink_segment(name), STATUS_OK);

    CHECK_EQ_INT(shm_create_segment(&a, name, 16, SHM_KIND_TEST, 3), STATUS_INVALID_ARG);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_reclaim_stale_from_dead_child)
{
    char stale[SHM_NAME_MAX_CHARS], live[SHM_NAME_MAX_CHARS], foreign[SHM_NAME_MAX_CHARS];
    test_shm_name(stale, sizeof stale, "stale");
    test_shm_name(live, sizeof live, "live");
    test_shm_name(foreign, sizeof foreign, "foreign");
    pid_t pid = fork();
    if (pid == 0) {
        /* the crashed server: creates a segment and exits without unlinking */
        shm_segment s;
        if (shm_create_segment(&s, stale, 4096, SHM_KIND_TEST, 1) != STATUS_OK) _exit(1);
        shm_mark_ready(&s);
        _exit(0);
    }
    CHECK_EQ_INT(test_shm_wait(pid, 5000), 0); /* reaped: kill(pid, 0) now fails with ESRCH */
    shm_segment l;
    CHECK_EQ_INT(shm_create_segment(&l, live, 4096, SHM_KIND_TEST, 1), STATUS_OK);
    shm_mark_ready(&l);
    /* a file with the prefix but no lightllm header is not ours to remove */
    int fd = shm_open(foreign, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    CHECK_EQ_INT(ftruncate(fd, 4096), 0);
    close(fd);
    CHECK_EQ_INT(test_shm_leftovers(), 3);

    char prefix[64];
    snprintf(prefix, sizeof prefix, "lightllm-ut%d-", (int)getpid());
    int32_t num = -1;
    CHECK_EQ_INT(shm_reclaim_stale(prefix, &num), STATUS_OK);
    CHECK_EQ_INT(num, 1);
    shm_segment probe;
    CHECK_EQ_INT(shm_attach_segment(&probe, stale, SHM_KIND_TEST, 1), STATUS_NOT_FOUND);
    CHECK_EQ_INT(shm_attach_segment(&probe, live, SHM_KIND_TEST, 1), STATUS_OK);
    shm_detach_segment(&probe);
    CHECK_EQ_INT(shm_reclaim_stale(prefix, &num), STATUS_OK);
    CHECK_EQ_INT(num, 0);
    /* the default prefix works too (other runs' stale segments may go with it: that is its job) */
    CHECK_EQ_INT(shm_reclaim_stale(NULL, &num), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 2);

    shm_detach_segment(&l);
    CHECK_EQ_INT(shm_unlink_segment(live), STATUS_OK);
    CHECK_EQ_INT(shm_unlink_segment(foreign), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}

TEST_CASE(shm_mapping_shared_with_forked_child)
{
    char name[SHM_NAME_MAX_CHARS];
    test_shm_name(name, sizeof name, "fork");
    shm_segment a;
    CHECK_EQ_INT(shm_create_segment(&a, name, 4096, SHM_KIND_TEST, 1), STATUS_OK);
    shm_mark_ready(&a);
    pid_t pid = fork();
    if (pid == 0) {
        /* one write through the inherited mapping, one through the child's own */
        shm_segment b;
        if (shm_attach_segment(&b, name, SHM_KIND_TEST, 1) != STATUS_OK) _exit(1);
        ((volatile uint8_t *)a.base)[100] = 42;
        ((volatile uint8_t *)b.base)[200] = 43;
        shm_detach_segment(&b);
        _exit(0);
    }
    CHECK_EQ_INT(test_shm_wait(pid, 5000), 0);
    CHECK_EQ_INT(((uint8_t *)a.base)[100], 42);
    CHECK_EQ_INT(((uint8_t *)a.base)[200], 43);
    shm_detach_segment(&a);
    CHECK_EQ_INT(shm_unlink_segment(name), STATUS_OK);
    CHECK_EQ_INT(test_shm_leftovers(), 0);
}
