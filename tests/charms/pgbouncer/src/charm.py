#!/usr/bin/python3
"""pgbouncer: a small stand-in for Canonical's PgBouncer charm (a principal).

Request (leader, app databag of `backend-database`, every hook, written only
when different): database=pgbouncer, extra-user-roles=SUPERUSER,
requested-secrets=["username","password","tls","tls-ca","uris","read-only-uris"].

Once the provider app databag has `secret-user` and `endpoints` (and
`version`: missing, the hook fails as the real charm's does; and `secret-tls`
with a `tls-ca`), the leader does, once per auth user:

1. connects with psycopg2 to the first endpoint host, port 5432, database
   `pgbouncer`, as the relation user, sslmode=verify-full against the
   provider's tls-ca (/var/lib/pgbouncer/backend-ca.pem); `SELECT version()`;
2. creates (or re-passwords) `pgbouncer_auth_<relation user, - -> _>` with an
   md5 verifier of a random 32-character password kept in the app-owned
   secret labelled `auth-user` (keys `username`, `password`);
3. installs schema `<auth user>` (owned by it) with the SECURITY DEFINER
   function `get_auth(uname)` reading pg_shadow, EXECUTE for the auth user
   only, in `pgbouncer` and in `postgres`;
4. polls pg_hba_file_rules every 2 s for up to 90 s until a rule names the
   auth user; on time-out: blocked "pg_hba does not admit <auth user>" (the
   next hook tries again);

then marks the auth user ready in the peer app databag (`auth-user`,
`auth-secret`), in the same commit as the secret, so the other units hear of
it (pgb-peers-relation-changed) only once the secret exists.

pgbouncer reserves the database name `pgbouncer` (its admin console), so
clients reach the backend database `pgbouncer` as `pgbouncer_primary` (the
primary: first host of `endpoints`) and `pgbouncer_readonly` (the first host
of `read-only-endpoints`: pgbouncer 1.18 verifies a multi-host entry's
certificate against the whole "a,b" string), any other database through `*`
(same name on the primary). pgbouncer 1.18 has no auth_dbname: auth_query
runs in the backend database of the pool, hence get_auth in `pgbouncer` and
`postgres`.

Every unit whose peer mark names the current auth user renders
/etc/pgbouncer/pgbouncer.ini (0640 root:postgres) and
/etc/pgbouncer/userlist.txt (0600 postgres, only the auth user's md5
verifier), a self-signed client certificate in /var/lib/pgbouncer, and keeps
`pgbouncer -d -u postgres` running: started when not running, SIGHUP when
a rendered file (ini, userlist, backend CA, client certificate) changed.
Without a backend-database relation pgbouncer is stopped.

Status: blocked "no backend-database relation"; waiting "waiting for
credentials"; waiting "waiting for backend TLS (tls-ca)"; waiting "waiting
for the auth user"; blocked "pg_hba does not admit <auth user>"; active
"pgbouncer on <address>:6432 -> <primary>".

Actions: get-connection, backend-tls (actions.yaml).

Passwords and secret contents are never logged nor put on the command line
of a long-lived process (psycopg2 takes them as keyword arguments; pgbouncer
reads files; secrets are added from files in a 0700 temporary directory).
"""

import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
import time

import psycopg2
from psycopg2 import sql

from charmtools import (ToolError, fail, is_leader, live_relations, log, own_app, run, status,
                        tool, tool_json)

ENDPOINT = "backend-database"
PEERS = "pgb-peers"
DATABASE = "pgbouncer"                   # the backend database we request
# `pgbouncer` is reserved inside pgbouncer (its admin console): clients reach
# the backend database `pgbouncer` through these aliases instead.
PRIMARY_ALIAS = "pgbouncer_primary"
READONLY_ALIAS = "pgbouncer_readonly"
REQUEST = {
    "database": DATABASE,
    "extra-user-roles": "SUPERUSER",
    "requested-secrets": json.dumps(
        ["username", "password", "tls", "tls-ca", "uris", "read-only-uris"],
        separators=(",", ":")),
}
PG_PORT = 5432
PGB_PORT = 6432

PGB_BIN = "/usr/sbin/pgbouncer"
OS_USER = "postgres"
ETC_DIR = "/etc/pgbouncer"
INI_FILE = f"{ETC_DIR}/pgbouncer.ini"
USERLIST_FILE = f"{ETC_DIR}/userlist.txt"
LIB_DIR = "/var/lib/pgbouncer"
CA_FILE = f"{LIB_DIR}/backend-ca.pem"
CLIENT_KEY = f"{LIB_DIR}/client-key.pem"
CLIENT_CERT = f"{LIB_DIR}/client-cert.pem"
LOG_DIR = "/var/log/pgbouncer"
LOG_FILE = f"{LOG_DIR}/pgbouncer.log"
RUN_DIR = "/run/pgbouncer"
PID_FILE = f"{RUN_DIR}/pgbouncer.pid"

AUTH_LABEL = "auth-user"
HBA_TIMEOUT = 90.0
HBA_INTERVAL = 2.0
CONNECT_ATTEMPTS = 5
CONNECT_PAUSE = 3.0


class HookError(Exception):
    """Fail the hook with this message (logged at ERROR)."""


# ---------------------------------------------------------------------------
# hook tools
# ---------------------------------------------------------------------------

def address():
    p = tool("network-get", ENDPOINT, "--ingress-address", check=False)
    addr = p.stdout.strip() if p.returncode == 0 else ""
    if not addr:
        addr = tool("unit-get", "private-address").stdout.strip()
    return addr


def secret_content(*args):
    """secret-get ... --format json as a dict (raises ToolError)."""
    content = tool_json("secret-get", *args)
    if not isinstance(content, dict):
        raise ToolError("secret-get: content is not a map")
    return content


# ---------------------------------------------------------------------------
# relations
# ---------------------------------------------------------------------------

def live_relation(endpoint):
    """The first relation id of `endpoint` this unit is in scope of, except one
    being broken; None when there is none."""
    return next(live_relations(endpoint), None)


def own_app_data(rid):
    return tool_json("relation-get", "-r", rid, "--app", "-", own_app()) or {}


def set_own_app_data(rid, want):
    """Write the keys of `want` that differ ("" deletes); returns the written keys."""
    current = own_app_data(rid)
    changes = {k: v for k, v in want.items() if current.get(k, "") != v}
    if changes:
        tool("relation-set", "-r", rid, "--app", "--file", "-", input=json.dumps(changes))
    return sorted(changes)


def write_request(rid):
    written = set_own_app_data(rid, REQUEST)
    if written:
        log(f"{rid}: wrote the request ({', '.join(written)})")


def provider_data(rid):
    app = tool_json("relation-list", "-r", rid, "--app")
    if not app:
        return {}
    return tool_json("relation-get", "-r", rid, "--app", "-", app) or {}


class Backend:
    """What the provider published: primary, read-only hosts, version,
    relation user credentials, TLS CA."""

    def __init__(self, data, user, tls):
        endpoints = data["endpoints"]
        self.primary = endpoints.split(",")[0].split(":")[0].strip()
        ro = [e.strip().split(":")[0] for e in (data.get("read-only-endpoints") or "").split(",")]
        self.readonly = [h for h in ro if h] or [self.primary]
        self.version = data.get("version")
        self.username = user.get("username") or ""
        self.password = user.get("password") or ""
        self.tls = tls.get("tls") or ""
        self.tls_ca = tls.get("tls-ca") or ""

    @property
    def auth_user(self):
        return f"pgbouncer_auth_{self.username}".replace("-", "_")


def read_backend(rid):
    """(Backend, None) or (None, waiting message)."""
    data = provider_data(rid)
    if not data.get("secret-user") or not data.get("endpoints"):
        return None, "waiting for credentials"
    user = secret_content(data["secret-user"], "--refresh")
    if not user.get("username") or not user.get("password"):
        return None, "waiting for credentials"
    tls = {}
    if data.get("secret-tls"):
        tls = secret_content(data["secret-tls"], "--refresh")
    be = Backend(data, user, tls)
    if not be.version:
        # The real charm splits `version` unconditionally and crashes without it.
        raise HookError(f"{rid}: the provider published credentials and endpoints but no "
                        "`version` (PgBouncer requires it, interfaces.md 2.7)")
    if not be.tls_ca.strip():
        log(f"{rid}: no tls-ca from the provider (tls={be.tls!r}); backend TLS verify-full "
            "needs it", "WARNING")
        return None, "waiting for backend TLS (tls-ca)"
    return be, None


def peer_relation():
    return live_relation(PEERS)


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

def os_user():
    pw = pwd.getpwnam(OS_USER)
    return pw.pw_uid, pw.pw_gid


def ensure_dir(path, mode, uid, gid):
    os.makedirs(path, exist_ok=True)
    st = os.stat(path)
    if (st.st_mode & 0o7777) != mode:
        os.chmod(path, mode)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)


def ensure_dirs():
    uid, gid = os_user()
    ensure_dir(ETC_DIR, 0o750, 0, gid)
    ensure_dir(LIB_DIR, 0o750, uid, gid)
    ensure_dir(LOG_DIR, 0o750, uid, gid)
    ensure_dir(RUN_DIR, 0o755, uid, gid)
    # pgbouncer may open its logfile before it drops to OS_USER (config errors
    # are logged as root): keep the file there and owned by OS_USER.
    fd = os.open(LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def write_file(path, content, mode, uid, gid):
    """Write atomically; True when content, mode or owner changed."""
    data = content.encode()
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            same = f.read() == data
        if same and (st.st_mode & 0o7777) == mode and (st.st_uid, st.st_gid) == (uid, gid):
            return False
    except FileNotFoundError:
        pass
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def write_ca(be):
    uid, gid = os_user()
    return write_file(CA_FILE, be.tls_ca.strip() + "\n", 0o600, uid, gid)


def ensure_client_cert(addr):
    """A self-signed client-side certificate for this unit's address (kept while it
    names the address and is valid for a day more); True when (re)generated."""
    if os.path.exists(CLIENT_KEY) and os.path.exists(CLIENT_CERT):
        ext = subprocess.run(["openssl", "x509", "-in", CLIENT_CERT, "-noout", "-ext",
                              "subjectAltName"], capture_output=True, text=True)
        end = subprocess.run(["openssl", "x509", "-in", CLIENT_CERT, "-noout", "-checkend",
                              "86400"], capture_output=True, text=True)
        names = ext.stdout.replace(",", " ").split()
        if ext.returncode == 0 and end.returncode == 0 and f"Address:{addr}" in names:
            return False
    san = f"IP:{addr}" if all(c in "0123456789.:abcdefABCDEF" for c in addr) else f"DNS:{addr}"
    uid, gid = os_user()
    tmp = tempfile.mkdtemp(prefix=".client-cert-", dir=LIB_DIR)
    try:
        key, cert = os.path.join(tmp, "key"), os.path.join(tmp, "cert")
        p = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "30", "-subj", f"/CN={addr}", "-addext",
             f"subjectAltName={san}", "-keyout", key, "-out", cert],
            capture_output=True, text=True, preexec_fn=lambda: os.umask(0o077))
        if p.returncode != 0:
            raise HookError(f"openssl req failed ({p.returncode}): {p.stderr.strip()[-500:]}")
        os.chown(key, uid, gid)
        os.chmod(key, 0o600)
        os.chown(cert, uid, gid)
        os.chmod(cert, 0o644)
        os.replace(key, CLIENT_KEY)
        os.replace(cert, CLIENT_CERT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"generated a self-signed client TLS certificate for {addr}")
    return True


def md5_verifier(username, password):
    return "md5" + hashlib.md5((password + username).encode()).hexdigest()


def render_ini(be, auth_user):
    # pgbouncer 1.18 checks a multi-host `host=a,b` entry's server certificate
    # against the whole string "a,b" (verify-full then always fails): the
    # read-only pool gets the first read-only endpoint only.
    return f"""\
; rendered by the pgbouncer test charm; changes are overwritten
; read-only endpoints published: {",".join(be.readonly)}
[databases]
{PRIMARY_ALIAS} = host={be.primary} port={PG_PORT} dbname={DATABASE}
{READONLY_ALIAS} = host={be.readonly[0]} port={PG_PORT} dbname={DATABASE}
* = host={be.primary} port={PG_PORT}

[pgbouncer]
listen_addr = *
listen_port = {PGB_PORT}
unix_socket_dir = {RUN_DIR}
pidfile = {PID_FILE}
logfile = {LOG_FILE}

auth_type = scram-sha-256
auth_file = {USERLIST_FILE}
auth_user = {auth_user}
auth_query = SELECT username, password FROM {auth_user}.get_auth($1)

server_tls_sslmode = verify-full
server_tls_ca_file = {CA_FILE}
server_tls_protocols = secure

client_tls_sslmode = require
client_tls_key_file = {CLIENT_KEY}
client_tls_cert_file = {CLIENT_CERT}

pool_mode = session
max_client_conn = 200
default_pool_size = 20
server_reset_query = DISCARD ALL
# after a failover the old primary refuses logins: retry soon, not after the 15 s default
server_login_retry = 1
server_connect_timeout = 3
ignore_startup_parameters = extra_float_digits,options
"""


def render_userlist(auth_user, password):
    return f'"{auth_user}" "{md5_verifier(auth_user, password)}"\n'


def rendered_backend():
    """The primary host in the rendered pgbouncer.ini ("" when none)."""
    try:
        with open(INI_FILE) as f:
            for line in f:
                k, sep, v = line.partition("=")
                if sep and k.strip() == PRIMARY_ALIAS:
                    for item in v.split():
                        if item.startswith("host="):
                            return item[len("host="):]
    except OSError:
        pass
    return ""


# ---------------------------------------------------------------------------
# the pgbouncer process
# ---------------------------------------------------------------------------

def running_pid():
    """The pid from the pidfile when that process is a live pgbouncer, else None."""
    try:
        with open(PID_FILE) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "pgbouncer" and state not in ("Z", "X") else None


def log_tail(n=5):
    try:
        with open(LOG_FILE, errors="replace") as f:
            return " | ".join(line.strip() for line in f.readlines()[-n:])
    except OSError:
        return ""


def start_pgbouncer():
    if os.path.exists(PID_FILE):       # stale (running_pid() said no)
        os.unlink(PID_FILE)
    with tempfile.TemporaryFile(mode="w+") as err:
        # -d: pgbouncer daemonises; stdio to /dev/null and a file, never our pipes.
        # No -q: what it says before daemonising (config errors) is the only reason
        # we get when it refuses to start (the logfile is not open yet then).
        p = subprocess.run([PGB_BIN, "-d", "-u", OS_USER, INI_FILE],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           start_new_session=True)
        err.seek(0)
        stderr = err.read().strip()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = running_pid()
        if pid:
            log(f"started pgbouncer (pid {pid})")
            return pid
        if p.returncode != 0:
            break
        time.sleep(0.2)
    why = " | ".join(stderr.splitlines()[-5:]) or log_tail()
    raise HookError(f"pgbouncer did not start (exit {p.returncode}): {why[-800:]}")


def reload_pgbouncer(pid):
    os.kill(pid, signal.SIGHUP)
    log(f"reloaded pgbouncer (SIGHUP to pid {pid})")


def stop_pgbouncer():
    pid = running_pid()
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running_pid() == pid:
        time.sleep(0.2)
    log(f"stopped pgbouncer (pid {pid})")


# ---------------------------------------------------------------------------
# PostgreSQL (leader)
# ---------------------------------------------------------------------------

def connect(be, dbname, host=None, port=PG_PORT, sslmode="verify-full", attempts=CONNECT_ATTEMPTS):
    last = None
    for i in range(attempts):
        try:
            kw = {"host": host or be.primary, "port": port, "dbname": dbname,
                  "user": be.username, "password": be.password, "sslmode": sslmode,
                  "connect_timeout": 10, "application_name": "pgbouncer-charm"}
            if sslmode == "verify-full":
                kw["sslrootcert"] = CA_FILE
            conn = psycopg2.connect(**kw)
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError as e:
            last = e
            if i + 1 < attempts:
                time.sleep(CONNECT_PAUSE)
    raise HookError(f"cannot connect to {host or be.primary}:{port}/{dbname} as "
                    f"{be.username} (sslmode={sslmode}): {str(last).strip()}")


def ensure_role(cur, auth_user, verifier):
    cur.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (auth_user,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    # CREATE/ALTER ROLE take no parameters: let the server quote name and verifier.
    cur.execute("SELECT pg_catalog.format(%s, %s, %s)",
                (f"{verb} ROLE %I LOGIN PASSWORD %L", auth_user, verifier))
    cur.execute(cur.fetchone()[0])
    # the backend may keep CONNECT from PUBLIC (the PostgreSQL charm revokes it on the
    # databases it creates): auth_query runs in the served database
    cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        sql.Identifier(DATABASE), sql.Identifier(auth_user)))
    log(f"{'altered' if verb == 'ALTER' else 'created'} role {auth_user} (md5 password)")


def install_get_auth(cur, auth_user):
    a = sql.Identifier(auth_user)
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(a, a))
    cur.execute(sql.SQL(
        "CREATE OR REPLACE FUNCTION {}.get_auth(uname TEXT) "
        "RETURNS TABLE (username TEXT, password TEXT) "
        "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS "
        "$$ SELECT usename::TEXT, passwd::TEXT FROM pg_catalog.pg_shadow "
        "WHERE usename = uname $$").format(a))
    cur.execute(sql.SQL("REVOKE ALL ON FUNCTION {}.get_auth(TEXT) FROM PUBLIC").format(a))
    cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}.get_auth(TEXT) TO {}").format(a, a))


def wait_hba(cur, auth_user):
    start = time.monotonic()
    while True:
        cur.execute("SELECT COUNT(*) FROM pg_catalog.pg_hba_file_rules "
                    "WHERE %s = ANY(user_name)", (auth_user,))
        n = cur.fetchone()[0]
        took = time.monotonic() - start
        if n > 0:
            log(f"pg_hba names {auth_user} ({n} rule(s)) after {took:.1f} s")
            return True
        if took + HBA_INTERVAL > HBA_TIMEOUT:
            log(f"pg_hba still does not name {auth_user} after {took:.1f} s", "WARNING")
            return False
        time.sleep(HBA_INTERVAL)


def load_auth_secret(uri=None):
    """(uri, content) of the app secret `auth-user`, or (None, None)."""
    args = [uri] if uri else ["--label", AUTH_LABEL]
    p = tool("secret-get", *args, "--format", "json", check=False)
    if p.returncode != 0:
        if "not found" in p.stderr:
            return None, None
        raise ToolError(f"secret-get {AUTH_LABEL}: {p.stderr.strip()}")
    content = json.loads(p.stdout)
    if uri is None and is_leader():
        info = tool_json("secret-info-get", "--label", AUTH_LABEL) or {}
        xid = next(iter(info), None)
        uri = f"secret:{xid}" if xid else None
    return uri, content


def store_auth_secret(uri, username, password):
    """secret-add (uri None) or secret-set; returns the uri."""
    tmp = tempfile.mkdtemp(prefix="pgbouncer-auth-")      # 0700
    try:
        files = []
        for key, value in (("username", username), ("password", password)):
            path = os.path.join(tmp, key)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
            files.append(f"{key}#file={path}")
        if uri:
            tool("secret-set", uri, *files)
        else:
            uri = tool("secret-add", "--owner", "application", "--label", AUTH_LABEL,
                       "--description", "pgbouncer auth_user credentials",
                       *files).stdout.strip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return uri


def ensure_auth_user(be, peer_rid):
    """Leader: (username, password) of a ready auth user, or None (status set)."""
    auth_user = be.auth_user
    uri, content = load_auth_secret()
    mark = own_app_data(peer_rid)
    if (content and content.get("username") == auth_user and content.get("password")
            and mark.get("auth-user") == auth_user and uri):
        if mark.get("auth-secret") != uri:
            set_own_app_data(peer_rid, {"auth-secret": uri})
        return auth_user, content["password"]

    if content and content.get("username") == auth_user and content.get("password"):
        password = content["password"]           # a previous attempt's; reuse
    else:
        alphabet = string.ascii_letters + string.digits
        password = "".join(secrets.choice(alphabet) for _ in range(32))
        uri = store_auth_secret(uri, auth_user, password)
        log(f"{'updated' if content else 'created'} the app secret {AUTH_LABEL} "
            f"for {auth_user}")

    status("maintenance", f"setting up {auth_user}")
    try:
        conn = connect(be, DATABASE)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT version()")
                log(f"connected to {be.primary}:{PG_PORT}/{DATABASE} as {be.username} "
                    f"(verify-full): {cur.fetchone()[0]}")
                ensure_role(cur, auth_user, md5_verifier(auth_user, password))
                install_get_auth(cur, auth_user)
                log(f"installed {auth_user}.get_auth() in {DATABASE}")
                conn2 = connect(be, "postgres")
                try:
                    with conn2.cursor() as cur2:
                        install_get_auth(cur2, auth_user)
                finally:
                    conn2.close()
                log(f"installed {auth_user}.get_auth() in postgres")
                admitted = wait_hba(cur, auth_user)
        finally:
            conn.close()
    except psycopg2.Error as e:
        raise HookError(f"setting up {auth_user} failed: {type(e).__name__}: "
                        f"{str(e).strip()}") from None
    if not admitted:
        set_own_app_data(peer_rid, {"auth-user": "", "auth-secret": ""})
        status("blocked", f"pg_hba does not admit {auth_user}")
        return None
    set_own_app_data(peer_rid, {"auth-user": auth_user, "auth-secret": uri})
    log(f"auth user {auth_user} is ready")
    return auth_user, password


def follower_auth_user(be, peer_rid):
    """Non-leader: (username, password) once the leader marked the auth user ready."""
    app = own_app()
    mark = tool_json("relation-get", "-r", peer_rid, "--app", "-", app) or {}
    if mark.get("auth-user") != be.auth_user:
        return None
    _, content = load_auth_secret()
    if content is None and mark.get("auth-secret"):
        _, content = load_auth_secret(mark["auth-secret"])
    if not content or content.get("username") != be.auth_user or not content.get("password"):
        return None
    return be.auth_user, content["password"]


# ---------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------

def reconcile():
    if not os.access(PGB_BIN, os.X_OK):
        status("blocked", f"{PGB_BIN} is not installed")
        return
    leader = is_leader()
    rid = live_relation(ENDPOINT)
    peer_rid = peer_relation()
    if rid and leader:
        write_request(rid)
    if rid is None:
        stop_pgbouncer()
        if leader and peer_rid:
            set_own_app_data(peer_rid, {"auth-user": "", "auth-secret": ""})
        status("blocked", "no backend-database relation")
        return
    be, waiting = read_backend(rid)
    if be is None:
        status("waiting", waiting)
        return
    ensure_dirs()
    ca_changed = write_ca(be)
    if peer_rid is None:
        log("no peer relation yet")
        status("waiting", "waiting for the auth user")
        return
    auth = ensure_auth_user(be, peer_rid) if leader else follower_auth_user(be, peer_rid)
    if auth is None:
        if not leader:
            status("waiting", "waiting for the auth user")
        return
    auth_user, password = auth
    addr = address()
    uid, gid = os_user()
    changed = ensure_client_cert(addr) | ca_changed
    changed |= write_file(USERLIST_FILE, render_userlist(auth_user, password), 0o600, uid, gid)
    changed |= write_file(INI_FILE, render_ini(be, auth_user), 0o640, 0, gid)
    pid = running_pid()
    if pid is None:
        start_pgbouncer()
    elif changed:
        reload_pgbouncer(pid)
    status("active", f"pgbouncer on {addr}:{PGB_PORT} -> {be.primary}")


def set_version():
    p = subprocess.run([PGB_BIN, "--version"], capture_output=True, text=True)
    words = (p.stdout.splitlines() or [""])[0].split()
    if p.returncode == 0 and len(words) >= 2:
        tool("application-version-set", "--", words[1], check=False)


# ---------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------

def action_backend():
    rid = live_relation(ENDPOINT)
    if rid is None:
        fail("no backend-database relation")
        return None
    try:
        be, waiting = read_backend(rid)
    except HookError as e:
        fail(str(e))
        return None
    if be is None:
        fail(f"no credentials yet ({waiting})")
        return None
    return be


def get_connection():
    be = action_backend()
    if be is None:
        return
    tool("action-set", f"host={address()}", f"port={PGB_PORT}", f"database={PRIMARY_ALIAS}",
         f"username={be.username}", f"password={be.password}",
         f"backend={rendered_backend()}")


def backend_tls():
    params = tool_json("action-get") or {}
    dbname = params.get("database") or PRIMARY_ALIAS
    if dbname == "pgbouncer":
        fail("`pgbouncer` is pgbouncer's admin console; use pgbouncer_primary")
        return
    be = action_backend()
    if be is None:
        return
    addr = address()
    try:
        conn = connect(be, dbname, host=addr, port=PGB_PORT, sslmode="require", attempts=1)
    except HookError as e:
        fail(str(e))
        return
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT ssl FROM pg_catalog.pg_stat_ssl "
                        "WHERE pid = pg_catalog.pg_backend_pid()), "
                        "pg_catalog.host(inet_server_addr()), pg_catalog.pg_is_in_recovery()")
            ssl, server, recovery = cur.fetchone()
    except psycopg2.Error as e:
        fail(f"query through pgbouncer failed: {str(e).strip()}")
        return
    finally:
        conn.close()

    def b(v):
        return "true" if v else "false"
    tool("action-set", f"ssl={b(ssl)}", f"server-addr={server or ''}",
         f"in-recovery={b(recovery)}", f"database={dbname}")


def hook(name):
    if name in ("stop", "remove"):
        stop_pgbouncer()
        return
    if name in ("install", "upgrade-charm", "start"):
        set_version()
    reconcile()


if __name__ == "__main__":
    run("pgbouncer", {"get-connection": get_connection, "backend-tls": backend_tls}, hook,
        errors=(HookError,))
