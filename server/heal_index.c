/*
 * heal_index.c — what a local brick's heal index holds, as `heal info`,
 * `volume status` and the heal-pending metric count it.
 *
 * The index (<brick>/.kembar/index/<gfid>, changelog.h §2) names every
 * object whose changelog counters are not all zero. That includes a file a
 * client is writing right now with every copy up: replicate marks each copy
 * dirty before a write and, with the eager lock, keeps the mark while the
 * writes stream. Counting those made `heal info` list every running VM's
 * image, so "restart the next node once heal info shows 0" could never be
 * followed.
 *
 * So each entry is classified from the counters of the copy on this brick
 * (read from its gfid handle, a hard link for a non-directory):
 *   pending   this copy blames another (a pending counter > 0), or the
 *             object is a directory with any mark (an entry operation in
 *             flight or missed), or the counters cannot be read — needs
 *             heal, or may; counted.
 *   writing   a regular file whose copy holds dirty marks only: a write is
 *             in flight on it, every copy took the writes so far. Not
 *             counted; shown apart. If the writer died mid-write, the heal
 *             daemon's sweep takes the data lock, finds the mark still
 *             there under it (a live writer's would have been cleared when
 *             it gave the eager lock up) and compares the copies: the mark
 *             is cleared or the copies healed, and a copy that missed a
 *             write is blamed by the others, so it shows up as pending on
 *             their bricks.
 *   clean     all counters zero (a crash between the index update and the
 *             xattr write; the heal daemon tidies it). Not counted.
 * A copy that other copies blame has its entry on THEIR bricks' indexes
 * (they hold the pending counters), so summing pending over the bricks of
 * a set counts each file needing heal at least once.
 *
 * Open-unlinked files (storage/posix orphan.c) are classified like the
 * rest, by their handle: one a process still writes through a descriptor
 * while a copy is away is pending (heal info shows it as <gfid:...>) until
 * the heal daemon heals it by gfid — restarting the node with the good copy
 * before that would serve the process stale data. Its entry goes with the
 * object at its last close (index before handle), and a leftover of a crash
 * nobody reopens goes when the brick's orphan grace runs out, so no orphan
 * stays counted.
 */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "lib/common.h"
#include "server/heal_index.h"
#include "xlators/changelog.h"

kbd_index_kind_t kbd_index_classify(const char *brick, const char *gfid_str)
{
    char path[PATH_MAX];
    if (strlen(gfid_str) < 4 ||
        snprintf(path, sizeof(path), "%s/.kembar/handles/%.2s/%.2s/%s", brick, gfid_str, gfid_str + 2,
                 gfid_str) >= (int)sizeof(path))
        return KBD_INDEX_PENDING;
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return KBD_INDEX_PENDING;
    uint8_t raw[KB_CL_DISK_BYTES];
    ssize_t n = lgetxattr(path, KB_CL_XATTR, raw, sizeof(raw));
    if (n < 0)
        return errno == ENODATA ? KBD_INDEX_CLEAN : KBD_INDEX_PENDING;
    if (n != (ssize_t)sizeof(raw) || raw[0] != (uint8_t)(KB_CL_MAGIC >> 24) ||
        raw[1] != (uint8_t)(KB_CL_MAGIC >> 16) || raw[2] != (uint8_t)(KB_CL_MAGIC >> 8) ||
        raw[3] != (uint8_t)KB_CL_MAGIC)
        return KBD_INDEX_PENDING;          /* not a changelog we know: let heal look */
    kb_cl_matrix_t m;
    kb_cl_decode(raw + 8, &m);
    bool dirty = false;
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++) {
            if (m.v[r][c] <= 0)
                continue;
            if (r != KB_CL_DIRTY_ROW)
                return KBD_INDEX_PENDING;
            dirty = true;
        }
    return dirty ? KBD_INDEX_WRITING : KBD_INDEX_CLEAN;
}

int kbd_index_count(const char *brick, int *writing)
{
    char *idx = NULL;
    int n = 0, w = 0;
    if (asprintf(&idx, "%s/.kembar/index", brick) < 0)
        return 0;
    DIR *dh = opendir(idx);
    free(idx);
    for (struct dirent *de; dh && (de = readdir(dh));) {
        if (de->d_name[0] == '.')
            continue;
        kbd_index_kind_t k = kbd_index_classify(brick, de->d_name);
        n += k == KBD_INDEX_PENDING;
        w += k == KBD_INDEX_WRITING;
    }
    if (dh)
        closedir(dh);
    if (writing)
        *writing = w;
    return n;
}
