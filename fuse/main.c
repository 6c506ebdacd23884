/*
 * main.c — kembar-fuse: mount a kembar volume (DESIGN §2).
 *
 *   kembar-fuse [-f] [-d] [-o OPT[,OPT]] HOST[:PORT][,HOST[:PORT]...]:/VOLUME MOUNTPOINT
 *   kembar-fuse [-f] [-o ...] --volfile FILE MOUNTPOINT      (tests: no volfile server)
 *   kembar-fuse --restart MOUNTPOINT                          (issue 15)
 *
 * Two processes serve a mount (issue 15): a small supervisor that owns it
 * (fuse/super.c) and a serving process that does the work, started by the
 * supervisor as `kembar-fuse --serve FD ARGS...` (the same arguments) and
 * replaced by a new one when it dies or on --restart (fuse/handover.c).
 *
 * Promises:
 *  - The volume is connected (kbc_new: volfile fetched, graph up) BEFORE the
 *    mount, so "no such volume", "not started" and "unreachable" are one
 *    line on stderr and a non-zero exit, never a hung or empty mount point.
 *  - Without -f the process forks first (threads do not survive fork) and
 *    the parent exits 0 only once the mount is live in the child, or with
 *    the child's status and message if it failed.
 *  - umount / fusermount3 -u end the session; the serving process then
 *    waits for fops in flight (bounded), tears the client down and exits 0,
 *    and the supervisor with it.
 */
#include "fuse/kbfuse.h"
#include "fuse/recent.h"

#include <fcntl.h>
#include <fuse_log.h>
#include <limits.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "fuse/ctl.h"
#include "fuse/handover.h"
#include "fuse/super.h"
#include "lib/log.h"

#define KBF_DRAIN_MS 10000
#define KBF_LOG_DIR "/var/log/kembar"

typedef struct kbf_args {
    bool foreground, debug;
    const char *spec, *mountpoint, *volfile;
    double attr_timeout, entry_timeout, negative_timeout;
    bool allow_other, default_permissions, security_xattrs, acl, splice;
    bool threads;                /* -o threads: libfuse worker threads read /dev/fuse */
    bool no_killpriv_v2;         /* -o no_killpriv_v2 (fuse/rawio.c) */
    char *log_file;              /* owned */
    char *tls_dir;               /* owned: -o tls-dir=DIR */
    int log_level;
    unsigned max_threads, max_idle;
    unsigned read_ahead_kb;      /* 0: leave the kernel's default (128) */
    char *pid_file;              /* owned: -o pid-file=F */
    int serve_fd;                /* --serve FD: a serving process (the supervisor's socket); -1 */
    const char *restart;         /* --restart MOUNTPOINT */
    char fuse_opts[2048];        /* mount options handed to libfuse as they are */
} kbf_args_t;

static const char *const usage_text =
    "usage: kembar-fuse [-f] [-d] [-o OPT[,OPT...]] HOST[:PORT][,HOST[:PORT]...]:/VOLUME MOUNTPOINT\n"
    "       kembar-fuse [-f] [-o ...] --volfile FILE MOUNTPOINT\n"
    "       kembar-fuse --restart MOUNTPOINT\n"
    "  --restart          replace the process serving MOUNTPOINT with the binary installed now,\n"
    "                     under running I/O (open files, locks and node ids are kept)\n"
    "  -f                 stay in the foreground (log to stderr)\n"
    "  -d                 FUSE debug output (implies -f)\n"
    "  -o attr_timeout=S  seconds attributes may be cached (default 1)\n"
    "  -o entry_timeout=S seconds names may be cached (default 1)\n"
    "  -o negative_timeout=S  seconds a missing name may be cached (default 0)\n"
    "  -o log-file=F, log-level=error|warn|info|debug|trace\n"
    "  -o noallow_other, nodefault_permissions  (both are on by default)\n"
    "  -o security_xattrs, acl  pass security.* / POSIX ACL xattrs to the bricks\n"
    "  -o splice          splice data through /dev/fuse\n"
    "  -o no_killpriv_v2  the kernel asks for security.capability before every write\n"
    "                     (default: bricks clear setuid/setgid when the kernel says)\n"
    "  -o threads         read /dev/fuse on worker threads (default: on the loop thread)\n"
    "  -o max_threads=N   FUSE worker threads with -o threads (default 32)\n"
    "  -o read_ahead_kb=N kernel readahead for buffered reads (default 1024, 0: kernel's)\n"
    "  -o tls-dir=DIR     cert.pem, key.pem, ca.pem for volumes with transport.tls on\n"
    "  -o pid-file=F      write the pid of the process that serves the mount (kept current)\n"
    "  -o ro,nosuid,nodev,noexec,noatime,... mount flags; auto_unmount\n"
    "mount(8)-only options (_netdev, defaults, auto, noauto, user, nofail, x-*) are ignored.\n";

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kembar-fuse: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

/* ---------------- options ---------------- */

static bool opt_is(const char *o, const char *a, const char *b)
{
    return strcmp(o, a) == 0 || (b && strcmp(o, b) == 0);
}

static const char *opt_val(const char *o, const char *key, const char *alt)
{
    size_t n = strlen(key);
    if (strncmp(o, key, n) == 0 && o[n] == '=')
        return o + n + 1;
    if (alt) {
        n = strlen(alt);
        if (strncmp(o, alt, n) == 0 && o[n] == '=')
            return o + n + 1;
    }
    return NULL;
}

static double parse_secs(const char *key, const char *v)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || d < 0 || d > 86400)
        die(2, "bad value '%s' for %s (seconds)", v, key);
    return d;
}

static unsigned parse_count(const char *key, const char *v, unsigned max)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || n < 1 || n > max)
        die(2, "bad value '%s' for %s (1..%u)", v, key, max);
    return (unsigned)n;
}

/* mount(8) / fstab options that mean nothing to the file system. */
static bool mount8_only(const char *o)
{
    static const char *const names[] = { "_netdev", "defaults", "auto", "noauto", "user", "users",
                                         "nouser", "nofail", "owner", "group", "loud", "silent" };
    for (size_t i = 0; i < KB_ARRAY_SIZE(names); i++)
        if (strcmp(o, names[i]) == 0)
            return true;
    return strncmp(o, "x-", 2) == 0 || strncmp(o, "comment=", 8) == 0;
}

/* Mount flags libfuse understands; passed through unchanged. */
static bool fuse_flag(const char *o)
{
    static const char *const names[] = {
        "rw", "ro", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync",
        "atime", "noatime", "diratime", "nodiratime", "lazytime", "nolazytime", "relatime",
        "norelatime", "strictatime", "nostrictatime", "dirsync", "auto_unmount",
    };
    for (size_t i = 0; i < KB_ARRAY_SIZE(names); i++)
        if (strcmp(o, names[i]) == 0)
            return true;
    return false;
}

static void add_fuse_opt(kbf_args_t *a, const char *o)
{
    size_t used = strlen(a->fuse_opts);
    if (used + strlen(o) + 2 >= sizeof(a->fuse_opts))
        die(2, "too many mount options");
    if (used)
        a->fuse_opts[used++] = ',';
    strcpy(a->fuse_opts + used, o);
}

static void parse_one_opt(kbf_args_t *a, const char *o)
{
    const char *v;
    if (!*o || mount8_only(o))
        return;
    if (opt_is(o, "allow_other", NULL))
        a->allow_other = true;
    else if (opt_is(o, "noallow_other", "no_allow_other"))
        a->allow_other = false;
    else if (opt_is(o, "default_permissions", NULL))
        a->default_permissions = true;
    else if (opt_is(o, "nodefault_permissions", "no_default_permissions"))
        a->default_permissions = false;
    else if (opt_is(o, "security_xattrs", NULL))
        a->security_xattrs = true;
    else if (opt_is(o, "acl", NULL))
        a->acl = true;
    else if (opt_is(o, "splice", NULL))
        a->splice = true;
    else if (opt_is(o, "no_killpriv_v2", NULL))
        a->no_killpriv_v2 = true;
    else if (opt_is(o, "threads", NULL))
        a->threads = true;
    else if ((v = opt_val(o, "attr_timeout", "attribute-timeout")))
        a->attr_timeout = parse_secs("attr_timeout", v);
    else if ((v = opt_val(o, "entry_timeout", "entry-timeout")))
        a->entry_timeout = parse_secs("entry_timeout", v);
    else if ((v = opt_val(o, "negative_timeout", "negative-timeout")))
        a->negative_timeout = parse_secs("negative_timeout", v);
    else if ((v = opt_val(o, "log-file", "log_file"))) {
        free(a->log_file);
        if (!(a->log_file = strdup(v)))
            die(1, "out of memory");
    }
    else if ((v = opt_val(o, "log-level", "log_level"))) {
        a->log_level = kb_log_parse_level(v);
        if (a->log_level < 0)
            die(2, "bad log level '%s' (error, warn, info, debug, trace)", v);
    } else if ((v = opt_val(o, "max_threads", NULL)))
        a->max_threads = parse_count("max_threads", v, 1024);
    else if ((v = opt_val(o, "max_idle_threads", NULL)))
        a->max_idle = parse_count("max_idle_threads", v, 1024);
    else if ((v = opt_val(o, "read_ahead_kb", NULL)))
        a->read_ahead_kb = strcmp(v, "0") ? parse_count("read_ahead_kb", v, 65536) : 0;
    else if ((v = opt_val(o, "tls-dir", "tls_dir"))) {
        free(a->tls_dir);
        a->tls_dir = strdup(v);
    }
    else if ((v = opt_val(o, "pid-file", "pid_file"))) {
        free(a->pid_file);
        a->pid_file = NULL;
        char abs[PATH_MAX];      /* the supervisor is a daemon: relative to where we started */
        if (v[0] != '/' && getcwd(abs, sizeof(abs)) && strlen(abs) + strlen(v) + 2 < sizeof(abs)) {
            strcat(abs, "/");
            strcat(abs, v);
            v = abs;
        }
        if (!*v || !(a->pid_file = strdup(v)))
            die(2, "bad value '%s' for pid-file", v);
    }
    else if (fuse_flag(o))
        add_fuse_opt(a, o);
    else
        die(2, "unknown mount option '%s'", o);
}

static void parse_opts(kbf_args_t *a, const char *list)
{
    char *copy = strdup(list);
    if (!copy)
        die(1, "out of memory");
    char *save = NULL;
    for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save))
        parse_one_opt(a, o);
    free(copy);
}

static void parse_args(kbf_args_t *a, int argc, char **argv)
{
    *a = (kbf_args_t){ .attr_timeout = 1.0, .entry_timeout = 1.0, .allow_other = true,
                       .default_permissions = true, .log_level = KB_LOG_INFO,
                       .max_threads = 32, .max_idle = 16, .read_ahead_kb = 1024, .serve_fd = -1 };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (strcmp(s, "-V") == 0 || strcmp(s, "--version") == 0) {
            printf("kembar-fuse %s (libfuse %d)\n", KB_VERSION, fuse_version());
            exit(0);
        } else if (strcmp(s, "-f") == 0) {
            a->foreground = true;
        } else if (strcmp(s, "-d") == 0) {
            a->debug = a->foreground = true;
        } else if (strncmp(s, "-o", 2) == 0) {
            const char *list = s[2] ? s + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!list)
                die(2, "-o needs an argument");
            parse_opts(a, list);
        } else if (strcmp(s, "--restart") == 0) {
            if (i + 1 >= argc)
                die(2, "--restart needs a mount point");
            a->restart = argv[++i];
            return;
        } else if (strcmp(s, "--serve") == 0 && i == 1) {   /* from the supervisor only */
            char *end;
            long fd = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (fd < 0 || fd > INT_MAX || *end)
                die(2, "--serve needs the supervisor's socket");
            a->serve_fd = (int)fd;
            i++;
        } else if (strcmp(s, "--volfile") == 0) {
            if (i + 1 >= argc)
                die(2, "--volfile needs a file");
            a->volfile = argv[++i];
        } else if (s[0] == '-' && s[1]) {
            die(2, "unknown argument '%s' (see --help)", s);
        } else if (!a->spec && !a->volfile) {
            a->spec = s;
        } else if (!a->mountpoint) {
            a->mountpoint = s;
        } else {
            die(2, "unexpected argument '%s' (see --help)", s);
        }
    }
    if ((!a->spec && !a->volfile) || !a->mountpoint) {
        fputs(usage_text, stderr);
        exit(2);
    }
}

/* ---------------- logging ---------------- */

/*
 * libfuse writes one message in several pieces; they are joined into a line
 * before it goes to the log, and the last complete line is kept so a failed
 * mount can say why on its one stderr line.
 */
static pthread_mutex_t fuse_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char fuse_log_line[1024];         /* (fuse_log_mu) the line being built */
static char fuse_log_last[1024];         /* (fuse_log_mu) the last full line */

static void fuse_log_to_kb(enum fuse_log_level level, const char *fmt, va_list ap)
{
    char piece[1024];
    vsnprintf(piece, sizeof(piece), fmt, ap);
    int l = level <= FUSE_LOG_ERR ? KB_LOG_ERROR : level <= FUSE_LOG_WARNING ? KB_LOG_WARN
          : level <= FUSE_LOG_INFO ? KB_LOG_INFO : KB_LOG_DEBUG;
    pthread_mutex_lock(&fuse_log_mu);
    size_t used = strlen(fuse_log_line);
    snprintf(fuse_log_line + used, sizeof(fuse_log_line) - used, "%s", piece);
    used = strlen(fuse_log_line);
    if (used && fuse_log_line[used - 1] == '\n') {
        fuse_log_line[used - 1] = 0;
        for (char *p = fuse_log_line; *p; p++)
            if (*p == '\n')
                *p = ' ';
        if (l <= kb_log_level)
            kb_log_write(l, "fuse", 0, "%s", fuse_log_line);
        snprintf(fuse_log_last, sizeof(fuse_log_last), "%s", fuse_log_line);
        fuse_log_line[0] = 0;
    }
    pthread_mutex_unlock(&fuse_log_mu);
}

/* The last line libfuse logged, "fuse: " stripped ("" if none). */
static const char *fuse_last_error(void)
{
    pthread_mutex_lock(&fuse_log_mu);
    const char *s = fuse_log_last;
    if (strncmp(s, "fuse: ", 6) == 0)
        s += 6;
    pthread_mutex_unlock(&fuse_log_mu);
    return s;   /* only read by the main thread on its way out */
}

/* /var/log/kembar/mnt-x.log for the mount point /mnt/x. */
static char *default_log_path(const char *mnt)
{
    char name[PATH_MAX];
    size_t j = 0;
    for (const char *p = mnt + (mnt[0] == '/'); *p && j + 5 < sizeof(name); p++)
        name[j++] = *p == '/' ? '-' : *p;
    name[j] = 0;
    if (kb_mkdir_p(KBF_LOG_DIR, 0755) < 0)
        return NULL;
    char *path = NULL;
    if (asprintf(&path, "%s/%s.log", KBF_LOG_DIR, j ? name : "root") < 0)
        return NULL;
    return path;
}

/* ---------------- daemon ---------------- */

/*
 * Fork before anything starts a thread. The parent waits for one byte on
 * the pipe (the mount is live) and exits 0; if the pipe closes without it,
 * the child failed (it already printed why on the inherited stderr) and the
 * parent exits with the child's status.
 */
static int daemon_fork(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        die(1, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die(1, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        setsid();
        return p[1];
    }
    close(p[1]);
    char ok;
    ssize_t n;
    do
        n = read(p[0], &ok, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1)
        _exit(0);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    _exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
}

/* ---------------- readahead ---------------- */

/* "MAJ:MIN" of the mount at MNT from /proc/self/mountinfo (the last, i.e.
 * topmost, one). Never stat()s the mount: its INIT is not answered yet. */
static bool mount_devno(const char *mnt, char *dev, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return false;
    char line[4096], esc[PATH_MAX * 4];
    size_t j = 0;
    for (const char *p = mnt; *p && j + 5 < sizeof(esc); p++) {  /* mountinfo escapes */
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\\')
            j += (size_t)snprintf(esc + j, sizeof(esc) - j, "\\%03o", (unsigned char)*p);
        else
            esc[j++] = *p;
    }
    esc[j] = 0;
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        char d[32], point[sizeof(line)];
        if (sscanf(line, "%*s %*s %31s %*s %4095s", d, point) == 2 && strcmp(point, esc) == 0) {
            snprintf(dev, len, "%s", d);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/*
 * The kernel caps a FUSE mount's readahead at 128 KiB (its bdi default),
 * whatever max_readahead says; sequential buffered reads (cp of an image)
 * run at about twice the speed with 1 MiB. Best effort: a failure is logged.
 */
static void set_read_ahead(const char *mnt, unsigned kb)
{
    char dev[32], path[96], val[16];
    if (!kb || !mount_devno(mnt, dev, sizeof(dev)))
        return;
    snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
    int n = snprintf(val, sizeof(val), "%u", kb);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, val, (size_t)n) != n)
        kb_warn("fuse", "cannot set %s to %u: %s", path, kb, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* ---------------- SIGUSR1: what is in flight ---------------- */

/* Loop thread (libevent turns the signal into an event there): log the
 * bridge's counters, every fop in flight with its age and each translator's
 * status (STYLE 12). */
static void dump_state(evutil_socket_t sig, short what, void *arg)
{
    kbf_t *fs = arg;
    pthread_mutex_lock(&fs->mu);
    unsigned inflight = fs->inflight;
    pthread_mutex_unlock(&fs->mu);
    kb_log_write(KB_LOG_INFO, "fuse", 0, "state: %u requests in flight, %zu inodes known to the kernel",
                 inflight, fs->it ? kbf_itable_count(fs->it) : 0);
    char line[1024];
    size_t n = 0;
    for (unsigned op = 0; op < KBF_RAW_NOPS && n < sizeof(line) - 64; op++) {
        uint64_t c = __atomic_load_n(&fs->raw.count[op], __ATOMIC_RELAXED);
        const char *name = kbf_raw_opname(op);
        if (c && name)
            n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%llu", name, (unsigned long long)c);
    }
    kb_log_write(KB_LOG_INFO, "fuse", 0, "requests:%s%s", n ? line : " none counted",
                 fs->raw.killpriv_v2 ? " (handle_killpriv_v2)" : "");
    kb_graph_dump_inflight(kbc_graph(fs->kbc));
    struct kb_ctl_status st = { 0 };
    kb_graph_ctl(kbc_graph(fs->kbc), KB_CTL_STATUS, &st);
    for (char *l = st.text, *nl; l && *l; l = nl ? nl + 1 : NULL) {   /* a line each: no cut */
        if ((nl = strchr(l, '\n')))
            *nl = 0;
        kb_log_write(KB_LOG_INFO, "fuse", 0, "translator status: %s", l);
    }
    free(st.text);
}

static void install_dump(void *arg)
{
    kbf_t *fs = arg;
    struct event *ev = evsignal_new(kb_loop_base(kbc_loop(fs->kbc)), SIGUSR1, dump_state, fs);
    if (ev && evsignal_add(ev, NULL) == 0)
        return;                  /* lives as long as the process */
    if (ev)
        event_free(ev);
    kb_warn("fuse", "SIGUSR1 state dump not available");
}

/* ---------------- main ---------------- */

static kbc_t *connect_volume(const kbf_args_t *a, kbf_t *fs)
{
    char err[512] = "";
    kbc_t *c;
    /* The loop thread must not take the signals meant for the FUSE loop
     * (SIGTERM wakes the main thread's wait): start it with all blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (a->volfile) {
        char *text = NULL;
        size_t len;
        int rc = kb_read_file(a->volfile, &text, &len);
        if (rc < 0) {
            snprintf(err, sizeof(err), "cannot read volfile '%s': %s", a->volfile, strerror(-rc));
            kbf_ho_failed(fs, err);
            die(1, "%s", err);
        }
        c = kbc_new_from_volfile(text, NULL, err, sizeof(err));
        free(text);
    } else {
        kbc_opts_t ko = { .tls_dir = a->tls_dir };
        c = kbc_new(a->spec, &ko, err, sizeof(err));
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!c) {
        kbf_ho_failed(fs, err);
        die(1, "%s", err);
    }
    return c;
}

/* libfuse splits -o at commas; a spec with backup hosts has commas. */
static void opt_escape(char *out, size_t len, const char *in)
{
    size_t j = 0;
    for (; *in && j + 2 < len; in++) {
        if (*in == ',' || *in == '\\')
            out[j++] = '\\';
        out[j++] = *in;
    }
    out[j] = 0;
}

static struct fuse_session *session_new(kbf_t *fs, const kbf_args_t *a)
{
    char opts[4096], fsname[1024];
    opt_escape(fsname, sizeof(fsname), a->volfile ? a->volfile : a->spec);
    snprintf(opts, sizeof(opts), "fsname=%s,subtype=kembar%s%s%s%s",
             fsname, a->allow_other ? ",allow_other" : "",
             a->default_permissions ? ",default_permissions" : "", a->fuse_opts[0] ? "," : "",
             a->fuse_opts);
    char *argv[] = { "kembar-fuse", "-o", opts, a->debug ? "-d" : NULL, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(a->debug ? 4 : 3, argv);
    struct fuse_session *se = fuse_session_new(&args, &kbf_ops, sizeof(kbf_ops), fs);
    fuse_opt_free_args(&args);
    return se;
}

/*
 * ---------------- /dev/fuse on the loop thread (the default) ----------------
 *
 * Handlers never block, so the libkembar loop thread itself can read
 * /dev/fuse: a request is decoded, wound into the graph (kbc_submit runs
 * it at once there) and its bytes are on the brick sockets without any
 * thread hand-off; the reply goes out from the same thread. With worker
 * threads (-o threads) every request costs a worker wake-up plus an
 * eventfd wake-up of the loop: measured, the loop-thread reader writes
 * 128 KiB records about 1.2x faster on this 2-core machine (see the commit).
 *
 * The fd is non-blocking and level-triggered: one wake reads at most
 * FUSE_BATCH requests, so sockets and timers are served in between.
 * The main thread only waits for the end (unmount, or a signal: libfuse's
 * handlers mark the session exited and interrupt the wait; the loop thread
 * has every signal blocked) and then detaches the event on the loop.
 */
#define FUSE_BATCH 16

/*
 * Receive buffers. A request is read into a kb_buf of our own (from
 * kb_buf_new's cache): a WRITE then references its payload where it lies
 * (kbf_write_buf wraps it, holding the buffer) instead of copying it, and
 * the next request goes to a fresh buffer. libfuse reads its bufsize
 * (256 pages + 4 KiB in libfuse 3.x) into whatever buf.mem points at, so
 * ours (KBF_RX_CAP, kb_buf_new's 2 MiB class: up to 16 kept warm) are
 * larger, and used only with the libfuse this was built and checked
 * against; any other version keeps libfuse's own buffer (and writes copy
 * their payload once, as with -o threads or -o splice). Small writes copy
 * anyway (fuse/file.c), so their buffer is simply reused.
 */
#define KBF_RX_CAP (2u << 20)
_Static_assert(KBF_RX_CAP >= 256 * 4096 + 4096, "libfuse 3.14 reads 1 MiB + 4 KiB requests");

struct fuse_on_loop {
    struct fuse_session *se;
    kbf_t *fs;
    kb_loop_t *loop;
    struct event *ev;
    struct fuse_buf buf;         /* loop thread: what libfuse reads into */
    bool own_rx;                 /* use rx (see above) */
    kb_buf_t *rx;                /* loop thread: our receive buffer, or NULL */
    void *lib_mem;               /* libfuse's own buffer (fallback), freed at the end */
    sem_t ended;                 /* posted when the session ended on the loop */
    sem_t detached;
};

/* Point buf.mem at a receive buffer: ours when we can, else libfuse's. */
static void rx_prepare(struct fuse_on_loop *fl)
{
    if (fl->own_rx && !fl->rx && !fl->fs->splice)
        fl->rx = kb_buf_new(KBF_RX_CAP);
    fl->buf = (struct fuse_buf){ .mem = fl->rx ? fl->rx->data : fl->lib_mem };
}

/* After dispatch: a buffer a WRITE still references is left to it. */
static void rx_done(struct fuse_on_loop *fl)
{
    if (!fl->rx)
        fl->lib_mem = fl->buf.mem;   /* libfuse may have allocated it just now */
    else if (__atomic_load_n(&fl->rx->refs, __ATOMIC_ACQUIRE) > 1) {
        kb_buf_unref(fl->rx);
        fl->rx = NULL;
    }
}

static void fuse_readable(evutil_socket_t fd, short what, void *arg)
{
    struct fuse_on_loop *fl = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < FUSE_BATCH && !fuse_session_exited(fl->se); i++) {
        rx_prepare(fl);
        int n = fuse_session_receive_buf(fl->se, &fl->buf);
        if (n > 0) {
            fl->fs->rx_cur = fl->rx;
            fuse_session_process_buf(fl->se, &fl->buf);
            fl->fs->rx_cur = NULL;
        }
        rx_done(fl);
        if (n == -EINTR || n == -ENOENT || n > 0)
            continue;
        if (n == -EAGAIN)
            return;
        if (n < 0)
            kb_err("fuse", "reading /dev/fuse: %s", strerror(-n));
        fuse_session_exit(fl->se);   /* 0: unmounted (ENODEV) or exited */
        break;
    }
    if (fuse_session_exited(fl->se)) {
        event_del(fl->ev);
        sem_post(&fl->ended);
    }
}

/* A restart (fuse/handover.c): read no more; the rest is resent to the next process. */
static void loop_stop_reading(kbf_t *fs)
{
    struct fuse_on_loop *fl = fs->reader;
    if (fl && fl->ev)
        event_del(fl->ev);
}

static void fuse_attach(void *arg)
{
    struct fuse_on_loop *fl = arg;
    fl->fs->reader = fl;
    fl->fs->stop_reading = loop_stop_reading;
    if (__atomic_load_n(&fl->fs->stopping, __ATOMIC_ACQUIRE))
        return;                  /* stopped before it started */
    fl->ev = event_new(kb_loop_base(fl->loop), fuse_session_fd(fl->se), EV_READ | EV_PERSIST,
                       fuse_readable, fl);
    if (!fl->ev || event_add(fl->ev, NULL) < 0) {
        kb_err("fuse", "cannot watch /dev/fuse on the loop");
        fuse_session_exit(fl->se);
        sem_post(&fl->ended);
    }
}

static void fuse_detach(void *arg)
{
    struct fuse_on_loop *fl = arg;
    fl->fs->stop_reading = NULL;
    fl->fs->reader = NULL;
    if (fl->ev)
        event_free(fl->ev);
    fl->ev = NULL;
    sem_post(&fl->detached);
}

static void sem_wait_all(sem_t *s)
{
    while (sem_wait(s) < 0 && errno == EINTR)
        ;
}

static int run_on_loop(struct fuse_session *se, kbf_t *fs, kb_loop_t *loop)
{
    struct fuse_on_loop fl = { .se = se, .fs = fs, .loop = loop,
                               .own_rx = fuse_version() == FUSE_MAJOR_VERSION * 100 + FUSE_MINOR_VERSION
                                         && FUSE_MAJOR_VERSION == 3 };
    int fd = fuse_session_fd(se);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        return -errno;
    sem_init(&fl.ended, 0, 0);
    sem_init(&fl.detached, 0, 0);
    if (kb_loop_run_in(loop, fuse_attach, &fl) < 0)
        return -ENOMEM;
    while (!fuse_session_exited(se)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;          /* bounds a signal that came just before the wait */
        if (sem_timedwait(&fl.ended, &ts) == 0)
            break;
    }
    /* The reader must be gone before libfuse closes the fd (unmount). */
    while (kb_loop_run_in(loop, fuse_detach, &fl) < 0)
        usleep(10000);
    sem_wait_all(&fl.detached);
    kb_buf_unref(fl.rx);
    free(fl.lib_mem);
    sem_destroy(&fl.ended);
    sem_destroy(&fl.detached);
    return 0;
}

static int run_loop(struct fuse_session *se, const kbf_args_t *a, kbf_t *fs)
{
    if (!a->threads)
        return run_on_loop(se, fs, kbc_loop(fs->kbc));

    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg)
        return -ENOMEM;
    /* Handlers never block (replies come from the loop thread), so a few
     * workers keep up; idle ones beyond max_idle exit. */
    fuse_loop_cfg_set_max_threads(cfg, a->max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, KB_MIN(a->max_idle, a->max_threads));
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

/* The supervisor (fuse/super.c): it mounts, and runs serving processes. */
static int supervise(kbf_args_t *a, const char *mnt, int argc, char **argv)
{
    int ready_fd = a->foreground ? -1 : daemon_fork();
    kb_log_level = a->log_level;
    if (!a->log_file && !a->foreground)
        a->log_file = default_log_path(mnt);
    if (a->log_file && kb_log_open(a->log_file) < 0)
        fprintf(stderr, "kembar-fuse: cannot open log file '%s'; logging to stderr\n", a->log_file);
    fuse_set_log_func(fuse_log_to_kb);
    /* A session only for the mount: the supervisor never reads a request. */
    struct fuse_session *se = session_new(NULL, a);
    if (!se)
        die(1, "cannot start a FUSE session: %s", fuse_last_error());
    kbf_super_cfg_t cfg = { .mnt = mnt, .se = se, .argc = argc, .argv = argv, .pid_file = a->pid_file,
                            .ready_fd = ready_fd, .handover = !a->splice, .last_error = fuse_last_error };
    int rc = kbf_super_run(&cfg);
    fuse_session_destroy(se);
    return rc;
}

/* A serving process: the volume, the FUSE session on the supervisor's /dev/fuse. */
static int serve(kbf_args_t *a, const char *mnt)
{
    kb_log_level = a->log_level;
    if (!a->log_file && !a->foreground)
        a->log_file = default_log_path(mnt);
    if (a->log_file && kb_log_open(a->log_file) < 0)
        fprintf(stderr, "kembar-fuse: cannot open log file '%s'; logging to stderr\n", a->log_file);
    char ident[40];
    snprintf(ident, sizeof(ident), "kembar-fuse[%d]", (int)getpid());
    kb_log_set_ident(ident);
    fuse_set_log_func(fuse_log_to_kb);
    signal(SIGPIPE, SIG_IGN);

    kbf_t fs = { .attr_timeout = a->attr_timeout, .entry_timeout = a->entry_timeout,
                 .negative_timeout = a->negative_timeout, .security_xattrs = a->security_xattrs,
                 .default_permissions = a->default_permissions,
                 .acl = a->acl, .splice = a->splice, .threads = a->threads, .ctl = -1 };
    pthread_mutex_init(&fs.mu, NULL);
    pthread_cond_init(&fs.cv, NULL);
    /* 4096 slots: the attributes a reply brought, for the kernel's GETATTR
     * that follows it (fuse/recent.h); without it every GETATTR is a STAT. */
    fs.recent = kbf_recent_new(4096);
    char why[512];
    if (kbf_ho_start(&fs, a->serve_fd, why, sizeof(why)) < 0)
        die(1, "%s", why);
    fs.kbc = connect_volume(a, &fs);
    kb_loop_run_in(kbc_loop(fs.kbc), install_dump, &fs);

    fs.se = session_new(&fs, a);
    if (!fs.se) {
        snprintf(why, sizeof(why), "cannot start a FUSE session: %s", fuse_last_error());
        kbf_ho_failed(&fs, why);
        die(1, "%s", why);
    }
    if (fuse_set_signal_handlers(fs.se) < 0)
        die(1, "cannot install signal handlers");
    if (kbf_ho_go(&fs, !a->no_killpriv_v2, !a->foreground, a->log_file) < 0)
        _exit(1);                /* logged; the supervisor starts another */
    if (!fs.takeover) {
        kb_info("fuse", "serving %s on %s", a->volfile ? a->volfile : a->spec, mnt);
        set_read_ahead(mnt, a->read_ahead_kb);
    }

    int rc = run_loop(fs.se, a, &fs);
    /* libfuse returns the signal number when a signal ended the session */
    if (!fs.unmounted) {
        /* A signal: the supervisor puts another process in our place. */
        kb_info("fuse", "ending (%s); the mount stays", rc > 0 ? "a signal" : rc ? strerror(-rc) : "asked");
        if (!kbf_drain(&fs, KBF_DRAIN_MS))
            _exit(0);
        _exit(0);
    }
    kb_info("fuse", "unmounted %s", mnt);
    fuse_remove_signal_handlers(fs.se);
    if (!kbf_drain(&fs, KBF_DRAIN_MS)) {
        /* Their replies would reach a destroyed session: leave it all. */
        kb_err("fuse", "fops still in flight after %u s; exiting without cleanup", KBF_DRAIN_MS / 1000);
        _exit(0);
    }
    fuse_session_destroy(fs.se);
    kbc_free(fs.kbc);
    kbf_itable_free(fs.it);
    kbf_recent_free(fs.recent);
    kbf_state_unmap(&fs.st);
    free(a->log_file);
    return 0;
}

int main(int argc, char **argv)
{
    kbf_args_t a;
    parse_args(&a, argc, argv);
    if (a.restart)
        return kbf_ctl_restart(a.restart, 120);

    char mnt[PATH_MAX];
    struct stat st;
    /* A serving process never looks at the mount point: it may be the one to answer. */
    if (a.serve_fd >= 0) {
        if (!realpath(a.mountpoint, mnt) && snprintf(mnt, sizeof(mnt), "%s", a.mountpoint) < 0)
            return 1;
    } else {
        if (!realpath(a.mountpoint, mnt) || stat(mnt, &st) < 0)
            die(1, "mount point '%s': %s", a.mountpoint, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            die(1, "mount point '%s' is not a directory", a.mountpoint);
    }
    if (a.spec) {
        kbc_spec_t spec;
        char err[256];
        if (kbc_spec_parse(a.spec, &spec, err, sizeof(err)) < 0)
            die(2, "%s", err);
        kbc_spec_clear(&spec);
    }
    return a.serve_fd >= 0 ? serve(&a, mnt) : supervise(&a, mnt, argc, argv);
}
