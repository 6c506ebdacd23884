/*
 * version.h — releases, op-versions and the rule for on-disk formats
 * (issue 18). KB_VERSION (lib/common.h) is this build's release; RELEASES at
 * the root of the repository lists the commits of the previous ones.
 *
 * Three version numbers, each with its own job:
 *
 *  - The protocol (rpc/wire.h, KB_PROTO_MIN..KB_PROTO_MAX): what two ends of
 *    one connection speak. Negotiated per connection; the highest both know.
 *
 *  - The op-version: the feature level of a release (1 = kembar 0.1, 2 =
 *    kembar 0.2, one step per release that adds something an older node
 *    cannot honour). Each node reports its own (PEER "version", rpc/wire.h).
 *    A volume definition records the oldest op-version that must be able to
 *    serve it (server/volume.c, "op-version="): a `volume set` of an option
 *    introduced at op-version N (xlators/options.h, `since`) is refused while
 *    a node or client of the volume runs a release below N, and raises the
 *    volume's op-version to N when it is taken; `volume set NAME
 *    cluster.op-version max` raises it to what every node runs. A node never
 *    stores or serves a definition whose op-version it does not reach.
 *
 *  - On-disk formats (the brick, xlators/storage/posix/posix.h; kembard's
 *    state dir, server/kembard.h): the rule, for every release to come:
 *      absent      the format of kembar 0.1.0, which stamped none = 1;
 *      <= ours     served; an older one is first upgraded in place (each
 *                  step from N to N+1 written in the code that owns the
 *                  format) and the new number stamped last;
 *      > ours      refused with a one-line reason, nothing touched (not even
 *                  the stamp): a newer kembar wrote it and an older one could
 *                  misread it. Downgrading is therefore only possible while
 *                  the newer release has not changed a format.
 *    A format number changes only when an older kembard would misread what
 *    the newer one writes; adding files an older one ignores does not.
 */
#ifndef KB_VERSION_H
#define KB_VERSION_H

#include <stdint.h>

/* This build's op-version (= the number of releases so far). */
#define KB_OP_VERSION 2u

/* Compare two release strings "MAJOR.MINOR.PATCH" numerically, component by
 * component (a missing component is 0; anything after the digits of a
 * component, e.g. "-rc1", is ignored): <0, 0, >0. */
int kb_version_cmp(const char *a, const char *b);

/* The op-version a release runs: that of the newest release this build
 * knows which is not newer than RELEASE. Unknown or unparsable: 1 (a client
 * or node too old to say what it runs is kembar 0.1). */
uint32_t kb_op_version_of(const char *release);

/* The release that introduced op-version OV ("0.2"), or NULL when this build
 * does not know it (a newer release's). */
const char *kb_op_version_release(uint32_t ov);

#endif
