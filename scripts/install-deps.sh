#!/usr/bin/env bash
# Installs the Debian packages the build, the local model and the tests need.
# Idempotent and quiet when everything is present; runs apt-get update first otherwise.
set -euo pipefail
pkgs=(build-essential pkg-config cppcheck clang-14 libclang-rt-14-dev clang-tidy
      iproute2 procps util-linux zip unzip
      libsystemd-dev libjansson-dev
      python3 python3-yaml python3-jsonschema python3-pytest python3-pyflakes)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
