/*
 * replicate_heal_stub.c — placeholder self-heal hooks of cluster/replicate
 * (replicate.h, heal.h). Until heal is implemented the heal ctl codes answer
 * -ENOSYS and nothing is swept. Delete this file when adding the real
 * replicate_heal*.c, which defines the same four functions.
 */
#include "xlators/replicate.h"

int repl_heal_init(repl_priv_t *p) { return 0; }
void repl_heal_fini(repl_priv_t *p) { }
void repl_heal_child_up(repl_priv_t *p, int i) { }
int repl_heal_ctl(repl_priv_t *p, int code, void *arg) { return -ENOSYS; }
