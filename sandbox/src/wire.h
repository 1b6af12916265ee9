/* Wire format between the hook-tool client (jujuc, juju-exec) and the local
 * model's controller: length-prefixed frames over a Unix stream socket.
 *
 * Why hand-written: the peer is our own controller (sandbox/juju/wire.py) and
 * the format is four integers and a list of byte strings; a JSON library
 * would be the only dependency of an otherwise libc-only tool.
 *
 * Request (client -> controller), one per connection:
 *   "JJC1"                      4 bytes magic
 *   u32 nfields                 big-endian, 5 <= nfields <= WIRE_MAX_FIELDS
 *   nfields x { u32 len; len bytes }   (len <= WIRE_MAX_FIELD)
 *     field 0  context id  (value of JUJU_CONTEXT_ID, may be empty)
 *     field 1  cwd         (client's working directory)
 *     field 2  command     (basename of argv[0], e.g. "relation-get", "juju-exec")
 *     field 3  "1" if field 4 carries the client's whole stdin, else "0"
 *     field 4  stdin bytes (empty when field 3 is "0")
 *     field 5.. argv[1..]
 *
 * Response (controller -> client):
 *   "JJR1"                      4 bytes magic
 *   u32 flags                   bit 0: WIRE_NEED_STDIN: resend with stdin
 *   u32 exit code
 *   u32 len; stdout bytes
 *   u32 len; stderr bytes
 *
 * When WIRE_NEED_STDIN is set the client reads its stdin to EOF and sends the
 * same request again on a new connection with field 3 = "1".
 */
#ifndef SANDBOX_WIRE_H
#define SANDBOX_WIRE_H

#define WIRE_REQ_MAGIC "JJC1"
#define WIRE_RESP_MAGIC "JJR1"
#define WIRE_NEED_STDIN 0x1u
#define WIRE_MAX_FIELDS 4096u
#define WIRE_MAX_FIELD (64u << 20) /* 64 MiB */

#endif
