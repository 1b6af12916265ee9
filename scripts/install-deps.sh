#!/usr/bin/env bash
# Installs the Debian packages the build, the local model and the tests need.
# Idempotent and quiet when everything is present; runs apt-get update first otherwise.
set -euo pipefail
pkgs=(build-essential pkg-config cppcheck clang-14 libclang-rt-14-dev clang-tidy
      iproute2 procps util-linux zip unzip
      libsystemd-dev libjansson-dev libsodium-dev libssl-dev libpq-dev libcurl4-openssl-dev
      postgresql postgresql-client etcd-server etcd-client patroni python3-etcd pgbouncer
      python3 python3-yaml python3-jsonschema python3-pytest python3-pyflakes python3-psycopg2)
# without their recommends: prometheus (here for promtool) would pull node-exporter and
# its helpers
lean=(prometheus prometheus-postgres-exporter)
missing=()
missing_lean=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
for p in "${lean[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_lean+=("$p")
done
# The charm runs its own cluster: Debian must not create (and start) its default one,
# neither on this host nor in a unit of the local model (they share /usr and dpkg).
mkdir -p /etc/postgresql-common/createcluster.d
printf '# written by pg-agent: the charm manages its own cluster\ncreate_main_cluster = false\n' \
    > /etc/postgresql-common/createcluster.d/pg-agent.conf
if [ $((${#missing[@]} + ${#missing_lean[@]})) -gt 0 ]; then
    echo "installing: ${missing[*]} ${missing_lean[*]}"
    apt-get update -qq
    # The charm runs its own etcd and PostgreSQL inside each unit: the packages' own
    # services must not start on this host (policy-rc.d says no while apt runs).
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && own_policy=1
    fi
    trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
    if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    if [ ${#missing_lean[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing_lean[@]}"
    fi
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet etcd 2>/dev/null; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
# Services whose postinst enables them (systemd unit and SysV script) must never start on
# this host, now or at the next boot: Patroni is only the failover benchmark's comparison
# (bench/patroni_cluster.py runs its own processes; it never creates a cluster by itself,
# createcluster.d above keeps Debian's default one away); prometheus is here for promtool;
# the units run their own metrics exporter (the agent's, TLS, as role monitoring).
for svc in patroni prometheus prometheus-postgres-exporter prometheus-node-exporter; do
    [ -e "/lib/systemd/system/$svc.service" ] || continue
    if [ -d /run/systemd/system ]; then
        if systemctl is-enabled --quiet "$svc" 2>/dev/null; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
    else
        if [ -e "/etc/systemd/system/multi-user.target.wants/$svc.service" ]; then
            deb-systemd-helper disable "$svc.service" >/dev/null 2>&1 || true
        fi
        if ls /etc/rc[2-5].d/S*"$svc" >/dev/null 2>&1; then
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    fi
done
