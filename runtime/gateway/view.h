/* view.h: TEMPORARY stand-in for the instance view (the view branch
 * replaces this file and view.c): only what the supervisor calls.
 *
 * The instance view is a shared memory object (a memfd) the supervisor
 * makes once; every worker inherits it and publishes its totals there.
 */
#ifndef SL_VIEW_H
#define SL_VIEW_H

#include <stddef.h>
#include <stdint.h>

/* Makes the view for nworkers workers: *fd is its memfd (the workers must
 * inherit it).  Returns 0, or a negative code with the reason in err. */
int sl_view_create(int nworkers, int *fd, char *err, size_t errlen);

/* Folds the dead worker's last totals into the instance's; *streams_lost
 * gets how many streams it had in flight.  Returns 0 or a negative code. */
int sl_view_retire(int fd, int worker, uint64_t *streams_lost);

#endif
