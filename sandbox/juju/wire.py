# Frame codec shared by the controller's sockets; mirror of sandbox/src/wire.h.
# Requests carry context id, cwd, command, stdin and argv; replies carry stdout, stderr, exit code.
import socket
import struct

REQ_MAGIC = b"JJC1"
RESP_MAGIC = b"JJR1"
NEED_STDIN = 0x1
MAX_FIELDS = 4096
MAX_FIELD = 64 * 1024 * 1024


class WireError(Exception):
    pass


class Request:
    __slots__ = ("context_id", "cwd", "command", "has_stdin", "stdin", "args")

    def __init__(self, context_id, cwd, command, has_stdin, stdin, args):
        self.context_id = context_id
        self.cwd = cwd
        self.command = command
        self.has_stdin = has_stdin
        self.stdin = stdin
        self.args = args


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WireError("short read")
        buf += chunk
    return bytes(buf)


def read_request(sock):
    if _recv_exact(sock, 4) != REQ_MAGIC:
        raise WireError("bad magic")
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    if n < 5 or n > MAX_FIELDS:
        raise WireError("bad field count")
    fields = []
    for _ in range(n):
        (ln,) = struct.unpack(">I", _recv_exact(sock, 4))
        if ln > MAX_FIELD:
            raise WireError("field too large")
        fields.append(_recv_exact(sock, ln))
    dec = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
    return Request(dec(fields[0]), dec(fields[1]), dec(fields[2]), fields[3] == b"1",
                   fields[4], [dec(f) for f in fields[5:]])


def encode_request(context_id, cwd, command, args, stdin=None):
    fields = [context_id.encode(), cwd.encode(), command.encode(),
              b"1" if stdin is not None else b"0", stdin or b""]
    fields += [a.encode("utf-8", "surrogateescape") for a in args]
    out = [REQ_MAGIC, struct.pack(">I", len(fields))]
    for f in fields:
        out.append(struct.pack(">I", len(f)))
        out.append(f)
    return b"".join(out)


def encode_response(code, stdout=b"", stderr=b"", flags=0):
    if isinstance(stdout, str):
        stdout = stdout.encode("utf-8", "surrogateescape")
    if isinstance(stderr, str):
        stderr = stderr.encode("utf-8", "surrogateescape")
    return b"".join([RESP_MAGIC, struct.pack(">II", flags, code & 0xFFFFFFFF),
                     struct.pack(">I", len(stdout)), stdout,
                     struct.pack(">I", len(stderr)), stderr])


def read_response(sock):
    if _recv_exact(sock, 4) != RESP_MAGIC:
        raise WireError("bad magic")
    flags, code = struct.unpack(">II", _recv_exact(sock, 8))
    (ln,) = struct.unpack(">I", _recv_exact(sock, 4))
    out = _recv_exact(sock, ln)
    (ln,) = struct.unpack(">I", _recv_exact(sock, 4))
    err = _recv_exact(sock, ln)
    return flags, code, out, err


def call(path, context_id, cwd, command, args, stdin=None, timeout=None):
    """Client side, used by bin/juju: one request, one response."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(encode_request(context_id, cwd, command, args, stdin))
        return read_response(s)
    finally:
        s.close()
