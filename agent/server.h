/* The agent's side of the relay socket: accept, check the peer is root, read the one
 * request frame without blocking the loop, hand it to the handler, send replies, close.
 *
 * Per connection: SO_PEERCRED uid must be 0 (else a warning with pid/uid, and close);
 * the request frame must arrive whole within SERVER_READ_DEADLINE_SEC (else a warning,
 * and close); a bad frame length (0 or over PROTO_MAX_FRAME) is logged and closed; a
 * frame that is not a valid request (request.h) is answered with the reason as a log
 * frame and {"exit":1}. While the handler runs, every log line is also sent to the relay
 * as {"log":..,"level":..}; then {"exit":N} ends the exchange.
 *
 * One request is handled at a time, inline: connections that arrive meanwhile wait in
 * the listen backlog, and connections still sending their request each have their own
 * buffer. More than SERVER_MAX_CONNS connections at once are refused with {"exit":1}.
 *
 * Ownership: the server borrows the sd_event loop and the listening fd (the caller
 * closes it after server_free) and owns its connections. The handler gets the request
 * for the duration of the call only.
 */
#ifndef PG_AGENT_SERVER_H
#define PG_AGENT_SERVER_H

#include <systemd/sd-event.h>

#include "request.h"

#define SERVER_MAX_CONNS 8
#define SERVER_READ_DEADLINE_SEC 5
#define SERVER_SEND_TIMEOUT_SEC 5

/* Returns the exit code (0..255) the relay should exit with. */
typedef int (*server_handler_fn)(const struct hook_event *ev, void *userdata);

struct server;

/* Start serving listen_fd (a listening Unix stream socket; made non-blocking here).
 * Returns 0, or a negative errno with *err set. */
int server_new(sd_event *e, int listen_fd, server_handler_fn handler, void *userdata,
               struct server **out, char **err);

/* Close every connection and stop listening (the fd itself stays open). NULL is fine. */
void server_free(struct server *s);

#endif
