/*
 * LD_PRELOAD shim for the fault campaign (tests/faults.rs): makes local
 * writes, fsyncs or renames under one folder fail with a chosen errno, the
 * way a full or failing disk does, without needing a broken disk.
 *
 * Environment:
 *   V2X_FAIL_PREFIX  absolute folder; only files under it are affected
 *   V2X_FAIL_OP      write | fsync | dirfsync | rename
 *   V2X_FAIL_ERRNO   ENOSPC | EIO | EDQUOT | EINVAL | EACCES | EPERM (default EIO)
 *   V2X_FAIL_AFTER   matching calls that still succeed first (default 0)
 *   V2X_FAIL_TIMES   how many calls fail after that (default: all of them)
 *
 * Compiled by tests/common/faults.rs with the system cc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static long seen;   /* matching calls so far (atomic) */

static const char *env(const char *k) {
    const char *v = getenv(k);
    return v && *v ? v : NULL;
}

static int wanted_errno(void) {
    const char *e = env("V2X_FAIL_ERRNO");
    if (e && strcmp(e, "ENOSPC") == 0) return ENOSPC;
    if (e && strcmp(e, "EDQUOT") == 0) return EDQUOT;
    if (e && strcmp(e, "EINVAL") == 0) return EINVAL;
    if (e && strcmp(e, "EACCES") == 0) return EACCES;
    if (e && strcmp(e, "EPERM") == 0) return EPERM;
    return EIO;
}

static int under_prefix(const char *path) {
    const char *p = env("V2X_FAIL_PREFIX");
    if (!p || !path) return 0;
    size_t n = strlen(p);
    return strncmp(path, p, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static int fd_under_prefix(int fd, int want_dir) {
    char link[64], path[PATH_MAX];
    struct stat st;
    if (fstat(fd, &st) != 0) return 0;
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len <= 0) return 0;
    path[len] = '\0';
    return under_prefix(path);
}

/* Whether this matching call of `op` must fail. */
static int should_fail(const char *op) {
    const char *want = env("V2X_FAIL_OP");
    if (!want || strcmp(want, op) != 0) return 0;
    long after = env("V2X_FAIL_AFTER") ? atol(env("V2X_FAIL_AFTER")) : 0;
    long times = env("V2X_FAIL_TIMES") ? atol(env("V2X_FAIL_TIMES")) : -1;
    long n = __atomic_fetch_add(&seen, 1, __ATOMIC_SEQ_CST);
    if (n < after) return 0;
    return times < 0 || n < after + times;
}

#define REAL(ret, name, ...)                                                  \
    static ret (*real_##name)(__VA_ARGS__);                                   \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(ssize_t, write, int, const void *, size_t);
    if (env("V2X_FAIL_OP") && fd_under_prefix(fd, 0) && should_fail("write")) {
        errno = wanted_errno();
        return -1;
    }
    return real_write(fd, buf, count);
}

static int fsync_common(int fd) {
    if (!env("V2X_FAIL_OP")) return 0;
    if (fd_under_prefix(fd, 0) && should_fail("fsync")) return 1;
    if (fd_under_prefix(fd, 1) && should_fail("dirfsync")) return 1;
    return 0;
}

int fsync(int fd) {
    REAL(int, fsync, int);
    if (fsync_common(fd)) {
        errno = wanted_errno();
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    if (fsync_common(fd)) {
        errno = wanted_errno();
        return -1;
    }
    return real_fdatasync(fd);
}

static int rename_fails(const char *from, const char *to) {
    return env("V2X_FAIL_OP") && (under_prefix(from) || under_prefix(to)) &&
           should_fail("rename");
}

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags) {
    REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
    if (rename_fails(oldpath, newpath)) {
        errno = wanted_errno();
        return -1;
    }
    return real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    REAL(int, renameat, int, const char *, int, const char *);
    if (rename_fails(oldpath, newpath)) {
        errno = wanted_errno();
        return -1;
    }
    return real_renameat(olddirfd, oldpath, newdirfd, newpath);
}

int rename(const char *oldpath, const char *newpath) {
    REAL(int, rename, const char *, const char *);
    if (rename_fails(oldpath, newpath)) {
        errno = wanted_errno();
        return -1;
    }
    return real_rename(oldpath, newpath);
}

int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags) {
    REAL(int, linkat, int, const char *, int, const char *, int);
    if (rename_fails(oldpath, newpath)) {
        errno = wanted_errno();
        return -1;
    }
    return real_linkat(olddirfd, oldpath, newdirfd, newpath, flags);
}
