/*
 * The AppImage runtime of cwl-airflow: a type-2 runtime (ELF, magic "AI\2" at offset 8, a
 * squashfs appended at the end of the ELF), written for this project and linked statically
 * against Debian's libsquashfuse, libfuse3 and decompressors (appimage/build-runtime.sh).
 *
 * By default it mounts its squashfs with FUSE at $TMPDIR/.mount_<name>XXXXXX and executes
 * AppRun from there, in its own process (AppRun is the image's foreground process). The FUSE
 * server is a child that lives while some process holds the keep-alive pipe AppRun inherits;
 * when the last holder ends, the server unmounts, removes the mount point and exits. Where
 * FUSE cannot be used (no /dev/fuse, no fusermount3, a mount refused), it says so once and
 * runs from a copy extracted into ~/.cache/appimage (kept for the next start).
 *
 * Before it mounts or extracts anything it checks the payload against the length and CRC-32 the
 * build wrote into .payload_crc, so that a cut or damaged download ends with its reason instead
 * of an I/O error deep inside Python, and leaves nothing behind.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <squashfuse/ll.h>
#include <squashfuse/squashfuse.h>

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#ifndef RUNTIME_VERSION
#define RUNTIME_VERSION "unknown"
#endif

/* Filled in after the build (update information, a signature): tools find them by name. */
__attribute__((section(".upd_info"), used)) static char update_info[1024];
__attribute__((section(".sha256_sig"), used)) static char sha256_sig[1024];
/* The payload's length and CRC-32, written by the build (src/portable/appimage.py); zero: unchecked. */
__attribute__((section(".payload_crc"), used)) static struct { uint64_t length; uint32_t crc32, filled; } payload;

/* Debian's libsquashfuse refers to LZO (a GPL library this runtime does not link); the
 * image is zstd, so an LZO block is an error. */
int lzo1x_decompress_safe(const unsigned char *src, size_t src_len, unsigned char *dst,
                          size_t *dst_len, void *wrkmem) {
    (void)src; (void)src_len; (void)dst; (void)dst_len; (void)wrkmem;
    return -1;
}

static char self[PATH_MAX];     /* the AppImage's real path */
static const char *name;        /* its file name */
static off_t offset;            /* where its squashfs starts */

static void die(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", name, what, strerror(errno));
    exit(127);
}

static void fail(const char *why) {
    fprintf(stderr, "%s: %s\n", name, why);
    exit(127);
}

/* Refuse a payload that is cut short or whose CRC-32 is not the build's. */
static void check_payload(void) {
    if (!payload.filled) return;
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) die("reading itself");
    if ((uint64_t)st.st_size < (uint64_t)offset + payload.length) {
        fprintf(stderr, "%s: the file is cut short (%lld of %llu bytes): download it again\n", name,
                (long long)st.st_size, (unsigned long long)(offset + payload.length));
        exit(127);
    }
    static unsigned char buffer[1 << 20];
    uLong crc = crc32(0, Z_NULL, 0);
    for (uint64_t done = 0; done < payload.length;) {
        size_t want = payload.length - done < sizeof buffer ? payload.length - done : sizeof buffer;
        ssize_t n = pread(fd, buffer, want, offset + done);
        if (n <= 0) die("reading itself");
        crc = crc32(crc, buffer, (uInt)n);
        done += n;
    }
    close(fd);
    if (crc != payload.crc32)
        fail("the file is damaged (its payload's CRC-32 is not the one it was built with): download it again");
}

/* The end of the ELF: its section header table is its last part. */
static off_t elf_size(const char *path) {
    Elf64_Ehdr header;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("reading its ELF header");
    if (pread(fd, &header, sizeof header, 0) != sizeof header)
        fail("the file is cut short (no whole ELF header): download it again");
    close(fd);
    if (memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64) {
        fprintf(stderr, "%s: not a 64-bit ELF file\n", name);
        exit(127);
    }
    return (off_t)(header.e_shoff + (Elf64_Off)header.e_shentsize * header.e_shnum);
}

static void usage(void) {
    printf("%s: cwl-airflow's AppImage. Without options it runs AppRun (cwl-airflow up when no command is given).\n"
           "  --appimage-help               this text\n"
           "  --appimage-version            the runtime's version\n"
           "  --appimage-offset             where the squashfs starts in the file\n"
           "  --appimage-extract [PATTERN]  extract the files (matching PATTERN) into ./squashfs-root (which must not exist)\n"
           "  --appimage-extract-and-run    run from an extracted copy (~/.cache/appimage) instead of FUSE\n"
           "  --appimage-mount              mount, print the mount point, hold it until interrupted\n"
           "APPIMAGE_EXTRACT_AND_RUN=1 has the effect of --appimage-extract-and-run.\n", name);
}

static int make_parents(char *path) {
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        int failed = mkdir(path, 0755) != 0 && errno != EEXIST;
        *slash = '/';
        if (failed) return -1;
    }
    return 0;
}

static int extract_file(sqfs *fs, sqfs_inode *inode, const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, inode->base.mode & 0777);
    if (fd < 0) return -1;
    static char buffer[1 << 17];
    for (sqfs_off_t done = 0; done < (sqfs_off_t)inode->xtra.reg.file_size;) {
        sqfs_off_t size = sizeof buffer;
        if (sqfs_read_range(fs, inode, done, &size, buffer) != SQFS_OK || size <= 0) { close(fd); return -1; }
        for (sqfs_off_t written = 0; written < size;) {
            ssize_t n = write(fd, buffer + written, size - written);
            if (n < 0) { close(fd); return -1; }
            written += n;
        }
        done += size;
    }
    return close(fd);
}

/* The squashfs's files (those matching pattern, with their folders) under dest. */
static int extract(const char *dest, const char *pattern) {
    sqfs fs;
    sqfs_traverse trv;
    sqfs_err err = SQFS_OK;
    if (sqfs_open_image(&fs, self, offset) != SQFS_OK) return -1;
    if (sqfs_traverse_open(&trv, &fs, sqfs_inode_root(&fs)) != SQFS_OK) return -1;
    int failed = 0;
    while (!failed && sqfs_traverse_next(&trv, &err)) {
        if (trv.dir_end || (pattern && fnmatch(pattern, trv.path, 0) != 0)) continue;
        sqfs_inode inode;
        char path[PATH_MAX];
        if (sqfs_inode_get(&fs, &inode, sqfs_dentry_inode(&trv.entry)) != SQFS_OK ||
            snprintf(path, sizeof path, "%s/%s", dest, trv.path) >= (int)sizeof path || make_parents(path) != 0) {
            failed = 1;
            break;
        }
        switch (inode.base.inode_type) {
        case SQUASHFS_DIR_TYPE: case SQUASHFS_LDIR_TYPE:
            failed = mkdir(path, 0755) != 0 && errno != EEXIST;
            break;
        case SQUASHFS_REG_TYPE: case SQUASHFS_LREG_TYPE:
            failed = extract_file(&fs, &inode, path) != 0;
            break;
        case SQUASHFS_SYMLINK_TYPE: case SQUASHFS_LSYMLINK_TYPE: {
            char target[PATH_MAX];
            size_t size = sizeof target;
            failed = sqfs_readlink(&fs, &inode, target, &size) != SQFS_OK ||
                     (unlink(path) != 0 && errno != ENOENT) || symlink(target, path) != 0;
            break;
        }
        default:  /* devices, fifos, sockets: none in an AppDir */
            break;
        }
    }
    sqfs_traverse_close(&trv);
    sqfs_destroy(&fs);
    return failed || err != SQFS_OK ? -1 : 0;
}

static void run_apprun(const char *appdir, int argc, char **argv) {
    char apprun[PATH_MAX], cwd[PATH_MAX];
    snprintf(apprun, sizeof apprun, "%s/AppRun", appdir);
    setenv("APPIMAGE", self, 1);
    setenv("APPDIR", appdir, 1);
    setenv("ARGV0", argv[0], 1);
    if (getcwd(cwd, sizeof cwd)) setenv("OWD", cwd, 1);
    argv[0] = apprun;
    (void)argc;
    execv(apprun, argv);
    die("running AppRun");
}

/* A folder that identifies this image (its squashfs's size and build time). */
static void cache_folder(char *out, size_t size) {
    sqfs fs;
    const char *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[PATH_MAX];
    if (cache && *cache) snprintf(base, sizeof base, "%s/appimage", cache);
    else snprintf(base, sizeof base, "%s/.cache/appimage", home && *home ? home : "/tmp");
    if (sqfs_open_image(&fs, self, offset) != SQFS_OK) die("reading its squashfs");
    snprintf(out, size, "%s/%s-%llx-%x", base, name, (unsigned long long)fs.sb.bytes_used, fs.sb.mkfs_time);
    sqfs_destroy(&fs);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

/* Extract into dest through a staging folder beside it, so that dest appears whole or not at
 * all (with complete, marked by a .complete file). A failure says why and leaves nothing. */
static void extract_whole(const char *dest, const char *pattern, int complete, const char *hint) {
    char staging[PATH_MAX + 32], marker[PATH_MAX + 48];
    snprintf(staging, sizeof staging, "%s.partial-%d", dest, (int)getpid());
    snprintf(marker, sizeof marker, "%s/.complete", staging);
    errno = 0;
    int fd = -1;
    if (make_parents(staging) != 0 || mkdir(staging, 0755) != 0 || extract(staging, pattern) != 0 ||
        (complete && ((fd = open(marker, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) < 0 || close(fd) != 0)) ||
        (rename(staging, dest) != 0 && !(complete && (errno == ENOTEMPTY || errno == EEXIST)))) {
        int error = errno ? errno : EIO;
        nftw(staging, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        fprintf(stderr, "%s: cannot extract into %s: %s%s\n", name, dest, strerror(error), hint);
        exit(127);
    }
    nftw(staging, remove_entry, 16, FTW_DEPTH | FTW_PHYS);  /* left only when another start was first */
}

/* Remove the staging folders of dest that an extraction killed midway left (its process is gone). */
static void remove_stale_stagings(const char *dest) {
    char *parent = dirname(strdupa(dest)), *base = basename(strdupa(dest));
    DIR *dir = opendir(parent);
    struct dirent *entry;
    size_t length = strlen(base);
    while (dir && (entry = readdir(dir))) {
        char path[PATH_MAX];
        if (strncmp(entry->d_name, base, length) != 0 || strncmp(entry->d_name + length, ".partial-", 9) != 0)
            continue;
        pid_t extractor = atoi(entry->d_name + length + 9);
        if (extractor <= 0 || kill(extractor, 0) == 0 || errno != ESRCH ||
            snprintf(path, sizeof path, "%s/%s", parent, entry->d_name) >= (int)sizeof path)
            continue;
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (dir) closedir(dir);
}

static void extract_and_run(int argc, char **argv, const char *why) {
    char folder[PATH_MAX], marker[PATH_MAX + 16];
    struct statvfs fs;
    cache_folder(folder, sizeof folder);
    if (why) fprintf(stderr, "%s: %s: running from an extracted copy in %s\n", name, why, folder);
    const char *cache = dirname(strdupa(folder));
    if (make_parents(folder) == 0 && statvfs(cache, &fs) == 0 && (fs.f_flag & ST_NOEXEC)) {
        fprintf(stderr, "%s: %s is on a file system mounted noexec, so nothing extracted there can run: set "
                "XDG_CACHE_HOME to a folder on another one%s\n", name, cache, why ? ", or make FUSE usable" : "");
        exit(127);
    }
    snprintf(marker, sizeof marker, "%s/.complete", folder);
    remove_stale_stagings(folder);
    if (access(marker, F_OK) != 0)
        extract_whole(folder, NULL, 1, " (set XDG_CACHE_HOME to a folder with room that you may write)");
    run_apprun(folder, argc, argv);
}

/* Why FUSE cannot be used here, or NULL. */
static const char *fuse_unusable(void) {
    if (access("/dev/fuse", R_OK | W_OK) != 0) return "FUSE is not usable here (no usable /dev/fuse)";
    if (geteuid() == 0) return NULL;
    const char *path = getenv("PATH");
    char candidate[PATH_MAX];
    for (char *copy = strdup(path ? path : "/usr/bin:/bin"), *dir = strtok(copy, ":"); dir; dir = strtok(NULL, ":"))
        if (snprintf(candidate, sizeof candidate, "%s/fusermount3", dir) < (int)sizeof candidate &&
            access(candidate, X_OK) == 0)
            return NULL;
    return access("/usr/bin/fusermount3", X_OK) == 0 ? NULL : "FUSE is not usable here (no fusermount3: install fuse3)";
}

static int keep_alive_fd = -1;

static void *unmount_when_released(void *session) {
    struct pollfd held = {.fd = keep_alive_fd, .events = POLLIN};
    while (poll(&held, 1, -1) < 0 && errno == EINTR) {}
    fuse_session_exit(session);
    fuse_session_unmount(session);  /* lazily: the mount ends when its last file is closed */
    return NULL;
}

/* Unmount and remove the mount points of this image's earlier runs whose server died. */
static void clean_stale_mounts(const char *tmp, const char *prefix) {
    DIR *dir = opendir(tmp);
    struct dirent *entry;
    while (dir && (entry = readdir(dir))) {
        char path[PATH_MAX];
        struct stat st;
        if (strncmp(entry->d_name, prefix, strlen(prefix)) != 0 ||
            snprintf(path, sizeof path, "%s/%s", tmp, entry->d_name) >= (int)sizeof path)
            continue;
        if (stat(path, &st) != 0 && errno == ENOTCONN) {
            if (geteuid() == 0) umount2(path, MNT_DETACH);
            else if (fork() == 0) {
                execlp("fusermount3", "fusermount3", "-u", "-z", "-q", path, (char *)NULL);
                _exit(127);
            } else wait(NULL);
        }
        rmdir(path);  /* fails, as it should, for a live mount */
    }
    if (dir) closedir(dir);
}

/* Mount the squashfs; the caller holds the returned keep-alive descriptor. NULL: why not. */
static const char *mount_image(char *mountpoint, size_t size) {
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char prefix[16];
    snprintf(prefix, sizeof prefix, ".mount_%.6s", name);
    clean_stale_mounts(tmp, prefix);
    snprintf(mountpoint, size, "%s/%sXXXXXX", tmp, prefix);
    if (!mkdtemp(mountpoint)) return "cannot make a mount point";
    int ready[2], keep[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe(keep) != 0) return "no pipe";
    pid_t server = fork();
    if (server < 0) return "cannot fork";
    if (server == 0) {
        /* the FUSE server: out of the terminal's signals, ended only by the keep-alive pipe */
        setsid();
        int null = open("/dev/null", O_RDWR);  /* hold no caller's pipe: only the keep-alive one */
        dup2(null, 0);
        dup2(null, 1);
        signal(SIGINT, SIG_IGN); signal(SIGTERM, SIG_IGN); signal(SIGHUP, SIG_IGN); signal(SIGQUIT, SIG_IGN);
        close(ready[0]);
        close(keep[1]);
        keep_alive_fd = keep[0];
        sqfs_ll *ll = sqfs_ll_open(self, offset);
        struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
        char options[256];
        snprintf(options, sizeof options, "ro,nodev,nosuid,fsname=%s,subtype=appimage", name);
        fuse_opt_add_arg(&args, name);
        fuse_opt_add_arg(&args, "-o");
        fuse_opt_add_arg(&args, options);
        struct fuse_lowlevel_ops ops = {
            .getattr = sqfs_ll_op_getattr, .opendir = sqfs_ll_op_opendir, .releasedir = sqfs_ll_op_releasedir,
            .readdir = sqfs_ll_op_readdir, .lookup = sqfs_ll_op_lookup, .open = sqfs_ll_op_open,
            .create = sqfs_ll_op_create, .release = sqfs_ll_op_release, .read = sqfs_ll_op_read,
            .readlink = sqfs_ll_op_readlink, .listxattr = sqfs_ll_op_listxattr,
            .getxattr = sqfs_ll_op_getxattr, .forget = sqfs_ll_op_forget, .statfs = stfs_ll_op_statfs,
        };
        sqfs_ll_chan channel;
        if (!ll || sqfs_ll_mount(&channel, mountpoint, &args, &ops, sizeof ops, ll) != SQFS_OK) _exit(1);
        if (write(ready[1], "1", 1) != 1) _exit(1);
        close(ready[1]);
        pthread_t watcher;
        pthread_create(&watcher, NULL, unmount_when_released, channel.session);
        fuse_session_loop(channel.session);
        pthread_join(watcher, NULL);
        rmdir(mountpoint);
        _exit(0);
    }
    close(ready[1]);
    close(keep[0]);
    char byte;
    if (read(ready[0], &byte, 1) != 1) {
        close(keep[1]);
        waitpid(server, NULL, 0);
        rmdir(mountpoint);
        return "FUSE is not usable here (the mount was refused)";
    }
    close(ready[0]);
    return NULL;  /* keep[1] stays open, inherited by AppRun and what it starts */
}

int main(int argc, char **argv) {
    name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!realpath("/proc/self/exe", self)) die("finding itself");
    name = strrchr(self, '/') + 1;
    offset = elf_size(self);
    const char *option = argc > 1 && strncmp(argv[1], "--appimage-", 11) == 0 ? argv[1] + 11 : NULL;
    if (option) {  /* the runtime's own options are not passed on */
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    if (!option) option = getenv("APPIMAGE_EXTRACT_AND_RUN") ? "extract-and-run" : "";
    if (strcmp(option, "help") == 0) { usage(); return 0; }
    if (strcmp(option, "version") == 0) { printf("%s\n", RUNTIME_VERSION); return 0; }
    if (strcmp(option, "offset") == 0) { printf("%lld\n", (long long)offset); return 0; }
    if (*option && strcmp(option, "extract") != 0 && strcmp(option, "extract-and-run") != 0 &&
        strcmp(option, "mount") != 0) {
        fprintf(stderr, "%s: unknown option --appimage-%s (see --appimage-help)\n", name, option);
        return 2;
    }
    check_payload();  /* everything below mounts or extracts it */
    if (strcmp(option, "extract") == 0) {
        if (access("squashfs-root", F_OK) == 0) fail("./squashfs-root exists: remove it, or extract in another folder");
        extract_whole("squashfs-root", argc > 1 ? argv[1] : NULL, 0, "");
        return 0;
    }
    if (strcmp(option, "extract-and-run") == 0) extract_and_run(argc, argv, NULL);
    char mountpoint[PATH_MAX];
    const char *why = fuse_unusable();
    if (!why) why = mount_image(mountpoint, sizeof mountpoint);
    if (strcmp(option, "mount") == 0) {
        if (why) { fprintf(stderr, "%s: %s\n", name, why); return 1; }
        printf("%s\n", mountpoint);
        fflush(stdout);
        signal(SIGINT, SIG_DFL);
        pause();  /* the mount lives until this process ends */
        return 0;
    }
    if (why) extract_and_run(argc, argv, why);
    run_apprun(mountpoint, argc, argv);
    return 127;
}
