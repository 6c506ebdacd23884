/*
 * heal_index.h — classifying a local brick's heal index entries (heal_index.c).
 */
#ifndef KBD_HEAL_INDEX_H
#define KBD_HEAL_INDEX_H

typedef enum kbd_index_kind {
    KBD_INDEX_PENDING,   /* needs heal (or may): counted by heal info */
    KBD_INDEX_WRITING,   /* a file being written, every copy in sync: shown apart */
    KBD_INDEX_CLEAN,     /* counters all zero: nothing to heal */
} kbd_index_kind_t;

/* The kind of index entry GFID_STR (a gfid string) on the brick at BRICK. */
kbd_index_kind_t kbd_index_classify(const char *brick, const char *gfid_str);

/* Entries of BRICK's index that need heal; *WRITING (if not NULL) gets the
 * number of files only being written. */
int kbd_index_count(const char *brick, int *writing);

#endif
