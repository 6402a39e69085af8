/* control.h - fabd's control socket (docs/fabd.md "Control protocol").
 *
 * A Unix stream socket in a directory of mode 0700 owned by fabd's user;
 * only that user (or root) is served (SO_PEERCRED).  Accepting and reading
 * happen on fabd's io_uring loop (POLL_ADD, then non-blocking accept/recv);
 * replies are written non-blocking, one JSON object per request line.
 * Private to fabd.
 */
#ifndef FABD_CONTROL_H
#define FABD_CONTROL_H

#include <stddef.h>

#include "run.h"

typedef struct fabd_control fabd_control;

/* The socket path of `fabric`: $XDG_RUNTIME_DIR/fab/<fabric>.sock when
 * XDG_RUNTIME_DIR is set (absolute), else /tmp/fab-<uid>/<fabric>.sock.
 * Returns 0, or -1 when it does not fit a sockaddr_un. */
int fabd_control_path(const char *fabric, char *out, size_t n);

/* Create the directory (0700; refused if it exists with another owner or
 * group/other permissions), refuse if another fabd answers on the path,
 * remove a stale socket, bind, listen and arm the loop.  Returns 0 or -1
 * with a message printed. */
int fabd_control_start(fabd_sup *r);

/* A completion of a FABD_OP_CTL_* op. */
void fabd_control_event(fabd_sup *r, fabd_op *op, int res);

/* Close every connection and the socket, unlink it.  Call after the ring is
 * gone (no op in flight).  NULL-safe. */
void fabd_control_stop(fabd_sup *r);

#endif
