#!/usr/bin/env bash
# `make demo`: bring up the local model and deploy the PostgreSQL charm on 3 units (one
# primary, two synchronous standbys over etcd), wait until all are active, print the status
# and a psql line that connects to the primary with sslmode=verify-full.
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
if ! status_json | $PY -c "import json,sys; sys.exit(0 if 'postgresql' in json.load(sys.stdin)['applications'] else 1)"; then
    # profile=testing keeps the footprint small on a shared development machine
    $J deploy --model "$MODEL" ./build/postgresql.charm -n 3 --config profile=testing
else
    $J refresh --model "$MODEL" postgresql --path ./build/postgresql.charm >/dev/null
fi

deadline=$((SECONDS + 600))
until status_json | $PY -c "
import json, sys
us = json.load(sys.stdin)['applications']['postgresql'].get('units', {})
msgs = [u.get('workload-status', {}).get('message') for u in us.values()]
ok = (len(us) >= 3 and all(u.get('workload-status', {}).get('current') == 'active' and
      u.get('juju-status', {}).get('current') == 'idle' for u in us.values()) and
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
# The cluster's internal CA (every unit's server certificate chains to it; its IP is a SAN)
CA=${DEMO_CA:-${JUJU_SANDBOX_DIR:-/var/lib/juju-sandbox}/demo-ca.pem}
$J exec --model "$MODEL" --unit "$primary" -- cat /var/lib/pg-agent/tls/ca.pem > "$CA"
cat <<MSG

The cluster is active: $primary is the primary (local model state in
${JUJU_SANDBOX_DIR:-/var/lib/juju-sandbox}). Connect to it as the monitoring user with
TLS verified against the cluster's CA (SCRAM; the password comes from the charm's secret
through the get-password action and is never printed):

  PGPASSWORD="\$($J run --model $MODEL postgresql/leader get-password username=monitoring --format json | $PY -c 'import json,sys; print(next(iter(json.load(sys.stdin).values()))["results"]["password"])')" psql "host=$addr user=monitoring dbname=postgres sslmode=verify-full sslrootcert=$CA"

The cluster as Patroni's own tool sees it:
  $J exec --model $MODEL --unit $primary -- patronictl -c /var/lib/pg-agent/patronictl.yaml list
Move the primary:  $J run --model $MODEL postgresql/1 promote-to-primary scope=unit
Superusers log in from a unit itself only:
  $J exec --model $MODEL --unit $primary -- 'runuser -u postgres -- psql -Atc "SELECT rolname FROM pg_roles WHERE rolcanlogin"'
Clean up: $J destroy-model $MODEL --no-prompt
MSG
