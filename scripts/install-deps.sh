#!/usr/bin/env bash
# Installs the Debian packages the build, the local model and the tests need.
# Idempotent and quiet when everything is present; runs apt-get update first otherwise.
set -euo pipefail
pkgs=(build-essential pkg-config cppcheck clang-14 libclang-rt-14-dev clang-tidy
      iproute2 procps util-linux zip unzip
      libsystemd-dev libjansson-dev libsodium-dev libssl-dev libpq-dev
      postgresql postgresql-client
      python3 python3-yaml python3-jsonschema python3-pytest python3-pyflakes python3-psycopg2)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The charm runs its own cluster: Debian must not create (and start) its default one,
# neither on this host nor in a unit of the local model (they share /usr and dpkg).
mkdir -p /etc/postgresql-common/createcluster.d
printf '# written by pg-agent: the charm manages its own cluster\ncreate_main_cluster = false\n' \
    > /etc/postgresql-common/createcluster.d/pg-agent.conf
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
