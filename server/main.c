/*
 * main.c — kembard, the node daemon (DESIGN §2).
 *
 *   kembard [--listen ADDR[:PORT]] [--state-dir DIR] [--log-file F]
 *           [--log-level L] [--daemon --pid-file F]
 *
 * Serves every started brick of every volume on this node, and the
 * management procedures, on one port (default 24800). SIGTERM/SIGINT stop
 * it cleanly; SIGHUP reopens the log (logrotate); SIGUSR1 dumps the calls in
 * flight with their ages.
 */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/thread.h>
#include "lib/log.h"
#include "lib/version.h"
#include "rpc/sync.h"
#include "rpc/tls.h"
#include "server/kembard.h"
#include "server/trust.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: kembard [--listen ADDR[:PORT]] [--state-dir DIR] [--log-file F] [--log-level L]\n"
               "               [--daemon --pid-file F] [--tls-dir DIR [--tls-mgmt]]\n"
               "  --tls-dir DIR  cert.pem, key.pem, ca.pem: accept TLS (volumes with transport.tls on demand it)\n"
               "  --tls-mgmt     accept CLI and node-to-node commands over TLS only\n"
               "  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
               "  default: --listen 0.0.0.0:%d --state-dir %s, foreground, log to stderr\n",
            KB_DEFAULT_PORT, KB_DEFAULT_STATE_DIR);
}

/* One row of the table below; an option a later release introduced says so. */
static void print_option_row(const kb_option_def_t *o, const char *type)
{
    uint32_t since = kb_opt_since(o->volume_key);
    const char *rel = kb_op_version_release(since);
    printf("| `%s` | %s | %s | %s", o->volume_key, o->dflt && *o->dflt ? o->dflt : "-", type, o->description);
    if (since > 1)
        printf(". Since kembar %s: refused while a node or client of the volume runs an older release", rel ? rel : "?");
    printf(" |\n");
}

/* The `volume set` options of every translator and of the volume itself, as
 * the Markdown table the README carries (make docs writes it there; a test
 * checks it is current). */
static int print_options_markdown(void)
{
    printf("| key | default | translator | description |\n|---|---|---|---|\n");
    for (size_t i = 0; i < kb_xlator_ntypes; i++) {
        const kb_xlator_type_t *t = kb_xlator_types[i];
        for (const kb_option_def_t *o = t ? t->options : NULL; o && o->key; o++)
            if (o->volume_key)
                print_option_row(o, t->name);
    }
    for (const kb_option_def_t *o = kbd_volume_options(); o->key; o++)
        print_option_row(o, "volume");
    return 0;
}

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
    kbd_t *d = arg;
    if (sig == SIGHUP) {
        kb_log_request_reopen();
        kb_info("kembard", "log reopened");
    } else if (sig == SIGUSR1) {
        kbd_dump_inflight(d);
    } else {
        kb_info("kembard", "signal %d: shutting down", (int)sig);
        kb_loop_stop(d->loop);
    }
}

static int write_pid(const char *path)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    return kb_write_file_atomic(path, buf, (size_t)n);
}

/* Fork into the background; the parent exits once the child is listening,
 * so `kembard --daemon && kembar ...` never races. */
static int daemonize(int *notify_fd)
{
    int p[2];
    if (pipe(p))
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0) {
        close(p[1]);
        char ok = 0;
        ssize_t n = read(p[0], &ok, 1);
        _exit(n == 1 && ok == 1 ? 0 : 1);
    }
    close(p[0]);
    setsid();
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (null > 2)
            close(null);
    }
    *notify_fd = p[1];
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "listen", required_argument, NULL, 'l' }, { "state-dir", required_argument, NULL, 's' },
        { "log-file", required_argument, NULL, 'L' }, { "log-level", required_argument, NULL, 'v' },
        { "daemon", no_argument, NULL, 'd' }, { "pid-file", required_argument, NULL, 'p' },
        { "tls-dir", required_argument, NULL, 't' }, { "tls-mgmt", no_argument, NULL, 'T' },
        { "metrics", required_argument, NULL, 'm' }, { "options-markdown", no_argument, NULL, 'O' },
        { "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
    };
    const char *listen = "0.0.0.0", *state = KB_DEFAULT_STATE_DIR, *logf = NULL, *pidf = NULL, *tlsdir = NULL, *metrics = NULL;
    bool tls_mgmt = false;
    bool daemon_mode = false;
    int c, level = KB_LOG_INFO;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 's': state = optarg; break;
        case 'L': logf = optarg; break;
        case 'v':
            if ((level = kb_log_parse_level(optarg)) < 0) {
                fprintf(stderr, "kembard: unknown log level '%s' (error, warn, info, debug, trace)\n", optarg);
                return 2;
            }
            break;
        case 'd': daemon_mode = true; break;
        case 'p': pidf = optarg; break;
        case 't': tlsdir = optarg; break;
        case 'm': metrics = optarg; break;
        case 'O': return print_options_markdown();
        case 'T': tls_mgmt = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("kembard %s\n", KB_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kembard: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    kbd_t d = { 0 };
    if (kb_parse_hostport(listen, &d.listen_host, &d.port, KB_DEFAULT_PORT)) {
        fprintf(stderr, "kembard: bad --listen '%s' (ADDR[:PORT])\n", listen);
        return 2;
    }
    bool wildcard = strcmp(d.listen_host, "0.0.0.0") == 0 || strcmp(d.listen_host, "::") == 0;
    d.self_host = strdup(wildcard ? "127.0.0.1" : d.listen_host);
    d.state_dir = strdup(state);
    kb_log_level = level;
    if (tls_mgmt && !tlsdir) {
        fprintf(stderr, "kembard: --tls-mgmt needs --tls-dir\n");
        return 2;
    }
    if (tlsdir) {
        char err[256] = "";
        d.tls_server = rpc_tls_ctx_from_dir(true, tlsdir, err, sizeof(err));
        d.tls_client = d.tls_server ? rpc_tls_ctx_from_dir(false, tlsdir, err, sizeof(err)) : NULL;
        if (!d.tls_client) {
            fprintf(stderr, "kembard: TLS: %s\n", err);
            return 1;
        }
        d.tls_mgmt = tls_mgmt;
        d.tls_dir = tlsdir;
        rpc_sync_set_tls(d.tls_client);   /* management peer calls */
    }
    if (logf && kb_log_open(logf)) {
        fprintf(stderr, "kembard: cannot open log file %s: %s\n", logf, strerror(errno));
        return 1;
    }
    char ident[64];
    snprintf(ident, sizeof(ident), "kembard:%u", d.port);
    kb_log_set_ident(ident);
    int rc = kb_mkdir_p(state, 0700);
    if (rc) {
        fprintf(stderr, "kembard: cannot create state dir %s: %s\n", state, strerror(-rc));
        return 1;
    }
    char ferr[512] = "";
    if (kbd_state_format(state, ferr, sizeof(ferr))) {   /* before anything in it is touched */
        fprintf(stderr, "kembard: %s\n", ferr);
        kb_err("kembard", "%s", ferr);
        return 1;
    }
    int notify_fd = -1;
    if (daemon_mode && daemonize(&notify_fd)) {
        fprintf(stderr, "kembard: cannot daemonize: %s\n", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    d.loop = kb_loop_new();
    if (!d.loop) {
        fprintf(stderr, "kembard: cannot create the event loop\n");
        return 1;
    }
    char err[256] = "";
    if (kbd_trust_init(&d, err, sizeof(err))) {
        fprintf(stderr, "kembard: %s\n", err);
        return 1;
    }
    if (kbd_serve_start(&d, err, sizeof(err))) {
        fprintf(stderr, "kembard: %s\n", err);
        return 1;
    }
    snprintf(ident, sizeof(ident), "kembard:%u", d.port);
    kb_log_set_ident(ident);
    if (metrics && kbd_metrics_start(&d, metrics, err, sizeof(err))) {
        fprintf(stderr, "kembard: %s\n", err);
        return 1;
    }
    if (pidf && write_pid(pidf)) {
        fprintf(stderr, "kembard: cannot write pid file %s\n", pidf);
        return 1;
    }
    if (kbd_mgmt_start(&d)) {
        fprintf(stderr, "kembard: cannot start the management thread\n");
        return 1;
    }
    d.started_ms = kb_now_ms();
    kbd_store_load(&d);
    struct event *sigs[5];
    int signums[5] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGQUIT };
    for (int i = 0; i < 5; i++) {
        sigs[i] = evsignal_new(kb_loop_base(d.loop), signums[i], on_signal, &d);
        evsignal_add(sigs[i], NULL);
    }
    kb_info("kembard", "kembard %s listening on %s:%u, state in %s", KB_VERSION, d.listen_host, d.port, state);
    if (notify_fd >= 0) {
        char ok = 1;
        if (write(notify_fd, &ok, 1) != 1)
            kb_warn("kembard", "cannot notify the parent");
        close(notify_fd);
    }
    kb_loop_run(d.loop);
    kbd_mgmt_stop(&d);
    kbd_metrics_stop(&d);
    kbd_serve_stop(&d);
    kbd_store_shutdown(&d);
    for (int i = 0; i < 5; i++)
        event_free(sigs[i]);
    if (pidf)
        unlink(pidf);
    kb_info("kembard", "stopped");
    kb_loop_free(d.loop);
    free(d.listen_host);
    free(d.self_host);
    free(d.state_dir);
    return 0;
}
