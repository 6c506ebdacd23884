/*
 * super.h — kembar-fuse's supervisor (issue 15; fuse/super.c).
 */
#ifndef KB_FUSE_SUPER_H
#define KB_FUSE_SUPER_H

#include <stdbool.h>

struct fuse_session;

typedef struct kbf_super_cfg {
    const char *mnt;             /* the mount point (real path) */
    struct fuse_session *se;     /* made with the mount options, not mounted: the supervisor mounts it */
    int argc;                    /* kembar-fuse's arguments, argv[0] included: each serving */
    char **argv;                 /*   process runs them with --serve FD in front */
    const char *pid_file;        /* -o pid-file: the serving process's pid (NULL: none) */
    int ready_fd;                /* the daemon's pipe to its parent (-1 with -f) */
    bool handover;               /* false: the mount cannot be handed over (-o splice); said once */
    const char *(*last_error)(void);   /* why libfuse could not mount ("" if it did not say) */
} kbf_super_cfg_t;

/* Run the supervisor of one mount until it ends; the exit status. */
int kbf_super_run(const kbf_super_cfg_t *cfg);

#endif
