/*
 * shm.c - POSIX shared-memory segments: create exclusively with a given
 * mode, open with an owner check, map (pre-faulted), wait for a creator to
 * publish the version word.  Sizes read from a file are checked against the
 * caller's minimum before anything is mapped.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

int fab__seg_create(const char *path, size_t size, unsigned mode, long gid, fab__seg *seg)
{
	/* A file-size limit (ulimit -f) below the segment's size: ftruncate
	 * and posix_fallocate past it raise SIGXFSZ, whose default action
	 * kills the process, before anything is created.  Say so instead
	 * (found by a resource-exhaustion trial: exit 153 and a 0-byte
	 * segment left behind). */
	struct rlimit fl;
	if (getrlimit(RLIMIT_FSIZE, &fl) == 0 && fl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)size > (uint64_t)fl.rlim_cur)
		return fab__err(FAB_ENOMEM,
				"%s: %zu bytes exceed this process's file size limit of %llu bytes "
				"(ulimit -f)",
				path, size, (unsigned long long)fl.rlim_cur);
	/* O_EXCL: the name is ours or the call fails; never adopt a segment
	 * someone else planted (PLATFORM §8: root bypasses DAC otherwise). */
	int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return fab__err(FAB_EEXIST, "%s already exists", path);
		if (errno == EACCES)
			return fab__err(FAB_EPERM, "%s: permission denied", path);
		if (errno == ENOSPC)
			/* tmpfs out of inodes (nr_inodes): as out of bytes. */
			return fab__err(FAB_ENOMEM, "no room in /dev/shm for %s: no free inode", path);
		return fab__errno("shm_open");
	}
	/* The umask applies to shm_open's mode; set the exact bits asked for.
	 * The group first: a new file takes the creator's group, and a member
	 * of a shared fabric whose primary group is another would lock the
	 * fabric's group out of its own segment.  Failing that (not in the
	 * group), it keeps ours. */
	if (gid >= 0)
		(void)!fchown(fd, (uid_t)-1, (gid_t)gid);
	struct stat sb;
	if (fchmod(fd, mode & 0777) < 0 || ftruncate(fd, (off_t)size) < 0 || fstat(fd, &sb) < 0) {
		int rc = fab__errno("fchmod/ftruncate/fstat");
		shm_unlink(path);
		close(fd);
		return rc;
	}
	/* Allocate every page now.  ftruncate makes a sparse file and
	 * MAP_POPULATE ignores a page it cannot allocate, so on a full
	 * /dev/shm (a container's is often 64 MiB) the first store into such
	 * a page - ours below, or any process's later - would be SIGBUS.
	 * posix_fallocate says ENOSPC instead, and tmpfs keeps the pages. */
	int fe;
	do /* older kernels' shmem_fallocate stops for any pending signal (review) */
		fe = posix_fallocate(fd, 0, (off_t)size);
	while (fe == EINTR);
	if (fe) {
		int rc;
		if (fe == ENOSPC) {
			struct statvfs vs;
			unsigned long long avail = 0;
			if (fstatvfs(fd, &vs) == 0)
				avail = (unsigned long long)vs.f_bavail * vs.f_frsize;
			rc = fab__err(FAB_ENOMEM,
				      "no room in /dev/shm for %s: %zu bytes needed, %llu free "
				      "(a smaller capacity or msg_size, or a larger /dev/shm)",
				      path, size, avail);
		} else if (fe == ENOMEM) {
			/* tmpfs pages are charged to the creator's memory
			 * cgroup: its limit, not /dev/shm's size. */
			rc = fab__err(FAB_ENOMEM,
				      "out of memory for the %zu bytes of %s (shared memory counts "
				      "towards the creator's memory limit)",
				      size, path);
		} else {
			errno = fe;
			rc = fab__errno("posix_fallocate");
		}
		shm_unlink(path);
		close(fd);
		return rc;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED) {
		int rc = errno == ENOMEM ? fab__err(FAB_ENOMEM, "mmap %s: out of memory", path)
					 : fab__errno("mmap");
		shm_unlink(path);
		close(fd);
		return rc;
	}
	seg->base = p;
	seg->size = size;
	seg->fd = fd;
	seg->dev = (uint64_t)sb.st_dev;
	seg->ino = (uint64_t)sb.st_ino;
	seg->mode = (unsigned)sb.st_mode & 0777u;
	seg->uid = (uint32_t)sb.st_uid;
	seg->gid = (uint32_t)sb.st_gid;
	return 0;
}

/* FAB_EPERM for a segment we may not open read-write, saying whose it is
 * and what its mode grants, so that the user knows whom to ask (the owner,
 * or the topology's `mode`). */
static int fab__seg_denied(const char *path)
{
	char full[320];
	struct stat sb;
	snprintf(full, sizeof full, "/dev/shm%s", path);
	if (stat(full, &sb) < 0)
		return errno == ENOENT ? fab__err(FAB_ENOENT, "%s does not exist", path)
				       : fab__err(FAB_EPERM, "%s: permission denied", path);
	return fab__err(FAB_EPERM,
			"%s: permission denied (owner uid %u, group %u, mode %04o; "
			"libfab opens segments for reading and writing)",
			path, (unsigned)sb.st_uid, (unsigned)sb.st_gid, (unsigned)(sb.st_mode & 07777));
}

int fab__seg_open(const char *path, size_t min_size, bool populate, fab__seg *seg)
{
	int fd = shm_open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			return fab__err(FAB_ENOENT, "%s does not exist", path);
		if (errno == EACCES)
			return fab__seg_denied(path);
		if (errno == ELOOP)
			return fab__err(FAB_EPERM, "%s: permission denied (a symbolic link)", path);
		return fab__errno("shm_open");
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		close(fd);
		return fab__errno("fstat");
	}
	/* Owner check: a segment owned by another user is accepted only when
	 * its creator granted group or other access explicitly (topology
	 * `mode`); a 0600 segment of another user is a squatter. */
	if (!S_ISREG(sb.st_mode) || (sb.st_uid != geteuid() && (sb.st_mode & 0066) == 0)) {
		close(fd);
		return fab__err(FAB_EPERM, "%s is owned by uid %u, not us", path, (unsigned)sb.st_uid);
	}
	/* A creator sizes the file right after creating it: an empty file may
	 * be one caught in between.  Give it the time we give the version
	 * word; a file that stays too small is corrupt. */
	for (int i = 0; (size_t)sb.st_size < min_size; i++) {
		if (i >= 2000 || (sb.st_size != 0 && i >= 1)) {
			close(fd);
			return fab__err(FAB_ECORRUPT, "%s is %lld bytes, smaller than its header", path,
					(long long)sb.st_size);
		}
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		if (fstat(fd, &sb) < 0) {
			close(fd);
			return fab__errno("fstat");
		}
	}
	size_t size = (size_t)sb.st_size;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
	if (p == MAP_FAILED) {
		int rc = errno == ENOMEM ? fab__err(FAB_ENOMEM, "mmap %s: out of memory", path)
					 : fab__errno("mmap");
		close(fd);
		return rc;
	}
	seg->base = p;
	seg->size = size;
	seg->fd = fd;
	seg->dev = (uint64_t)sb.st_dev;
	seg->ino = (uint64_t)sb.st_ino;
	seg->mode = (unsigned)sb.st_mode & 0777u;
	seg->uid = (uint32_t)sb.st_uid;
	seg->gid = (uint32_t)sb.st_gid;
	return 0;
}

bool fab__seg_unlinkable(const char *path, uint32_t *owner)
{
	char full[320];
	struct stat sb, db;
	snprintf(full, sizeof full, "/dev/shm%s", path);
	if (lstat(full, &sb) != 0)
		return true; /* gone (or unreadable: shm_unlink will say) */
	*owner = (uint32_t)sb.st_uid;
	if (stat("/dev/shm", &db) != 0 || !(db.st_mode & S_ISVTX))
		return true;
	uid_t me = geteuid();
	return me == 0 || sb.st_uid == me || db.st_uid == me;
}

void fab__seg_unmap(fab__seg *seg)
{
	if (seg->base)
		munmap(seg->base, seg->size);
	if (seg->fd >= 0)
		close(seg->fd);
	seg->base = NULL;
	seg->fd = -1;
}

/*
 * Wait (up to ~2 s) for a creator to store-release the version word.
 * Returns 0 with the version, or FAB_ECORRUPT if it never appears (the
 * creator died half-way; recovery or `fabctl rm` removes such a segment).
 */
int fab__seg_wait_version(_Atomic uint32_t *version, uint32_t *out)
{
	for (int i = 0; i < 2000; i++) {
		/* Pairs with the creator's store_release of version: once seen,
		 * the whole header written before it is visible. */
		uint32_t v = load_acquire(version);
		if (v) {
			*out = v;
			return 0;
		}
		if (i < 100) {
			sched_yield();
		} else {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
		}
	}
	return fab__err(FAB_ECORRUPT, "segment never finished initialising (creator died?)");
}
