#!/usr/bin/env bash
# `make demo`: bring up the local model and deploy the PostgreSQL charm on 3 units (one
# primary, two synchronous standbys over etcd) with a TLS provider on client-certificates
# (tests/charms/tls-provider) and a client application on `database`
# (tests/charms/db-client), wait until all are active, print the status and a psql line
# that connects to the primary as that client with sslmode=verify-full.
set -euo pipefail
cd "$(dirname "$0")/.."
J=sandbox/bin/juju
MODEL=${DEMO_MODEL:-demo}
PY=/usr/bin/python3

$J bootstrap
if ! $J models --format json | $PY -c "
import json, sys; sys.exit(0 if any(m['short-name'] == '$MODEL' for m in json.load(sys.stdin)['models']) else 1)"; then
    $J add-model "$MODEL"
fi

status_json() { $J status --model "$MODEL" --format json; }
has_app() { status_json | $PY -c "import json,sys; sys.exit(0 if '$1' in json.load(sys.stdin)['applications'] else 1)"; }
if ! has_app postgresql; then
    # profile=testing keeps the footprint small on a shared development machine
    $J deploy --model "$MODEL" ./build/postgresql.charm -n 3 --config profile=testing
else
    $J refresh --model "$MODEL" postgresql --path ./build/postgresql.charm >/dev/null
fi
# the test charms, as directories (each with the shared hook-tool helpers in src/)
CHARMS=build/demo-charms
rm -rf "$CHARMS" && mkdir -p "$CHARMS"
cp -r tests/charms/tls-provider tests/charms/db-client "$CHARMS"/
for c in tls-provider db-client; do cp tests/charms/_common/*.py "$CHARMS/$c/src/"; done
if ! has_app tls-provider; then
    $J deploy --model "$MODEL" "./$CHARMS/tls-provider" tls-provider
    $J integrate --model "$MODEL" postgresql:client-certificates tls-provider:certificates
fi
if ! has_app db-client; then
    $J deploy --model "$MODEL" "./$CHARMS/db-client" db-client --config database-name=demo
    $J integrate --model "$MODEL" postgresql:database db-client:database
fi

deadline=$((SECONDS + 600))
until status_json | $PY -c "
import json, sys
apps = json.load(sys.stdin)['applications']
us = apps['postgresql'].get('units', {})
msgs = [u.get('workload-status', {}).get('message') for u in us.values()]
others = [u for a in ('tls-provider', 'db-client') for u in (apps.get(a) or {}).get('units', {}).values()]
ok = (len(us) >= 3 and len(others) == 2 and
      all(u.get('workload-status', {}).get('current') == 'active' and
          u.get('juju-status', {}).get('current') == 'idle' for u in list(us.values()) + others) and
      msgs.count('Primary') == 1)
sys.exit(0 if ok else 1)"; do
    if [ $SECONDS -gt $deadline ]; then
        echo "the cluster did not become active in 600 s:" >&2
        $J status --model "$MODEL" >&2
        exit 1
    fi
    sleep 1
done
$J status --model "$MODEL"
primary=$(status_json | $PY -c "
import json, sys
us = json.load(sys.stdin)['applications']['postgresql']['units']
print(next(n for n, u in us.items() if u['workload-status'].get('message') == 'Primary'))")
addr=$(status_json | $PY -c "import json,sys; print(json.load(sys.stdin)['applications']['postgresql']['units']['$primary']['public-address'])")
# What the client received: its user, and the CAs to verify the servers with (the provider's,
# and the internal one)
CA=${DEMO_CA:-${JUJU_SANDBOX_DIR:-/var/lib/juju-sandbox}/demo-ca.pem}
creds() { $J run --model "$MODEL" db-client/0 get-credentials --format json 2>/dev/null | $PY -c "import json,sys; print(next(iter(json.load(sys.stdin).values()))['results']['$1'])"; }
creds tls-ca > "$CA"
user=$(creds username)
# The line printed below must work: connect with it once (the password only in the
# environment of psql, never on a command line or the screen)
if ! got=$(PGPASSWORD="$(creds password)" psql "host=$addr user=$user dbname=demo sslmode=verify-full sslrootcert=$CA" \
        -Atc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") || [ "$got" != t ]; then
    echo "ERROR connecting to $addr as $user with sslmode=verify-full failed" >&2
    exit 1
fi
cat <<MSG

The cluster is active: $primary is the primary (local model state in
${JUJU_SANDBOX_DIR:-/var/lib/juju-sandbox}), serving the tls-provider's certificates.
db-client received user $user and database demo through the database relation. Connect
as that client with TLS verified against the CA it received (SCRAM; the password comes
from its Juju secret through the get-credentials action and is never printed; the demo
just connected this way):

  PGPASSWORD="\$($J run --model $MODEL db-client/0 get-credentials --format json | $PY -c 'import json,sys; print(next(iter(json.load(sys.stdin).values()))["results"]["password"])')" psql "host=$addr user=$user dbname=demo sslmode=verify-full sslrootcert=$CA"

The cluster as Patroni's own tool sees it:
  $J exec --model $MODEL --unit $primary -- patronictl -c /var/lib/pg-agent/patronictl.yaml list
Move the primary:  $J run --model $MODEL postgresql/1 promote-to-primary scope=unit
Superusers log in from a unit itself only:
  $J exec --model $MODEL --unit $primary -- 'runuser -u postgres -- psql -Atc "SELECT rolname FROM pg_roles WHERE rolcanlogin"'
Clean up: $J destroy-model $MODEL --no-prompt
MSG
