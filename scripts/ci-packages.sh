#!/usr/bin/env bash
# Install the system tools the tests call, when missing (Debian/Ubuntu, apt-get as root).
#   systemd-analyze, systemd-sysusers, systemd-tmpfiles (package systemd): tests/integration/
#   test_systemd.py verifies systemd/postbackd.service, .sysusers and .tmpfiles with them.
# Nothing is started: the tools work without a running systemd. Usage: scripts/ci-packages.sh
set -euo pipefail

say() { printf 'ci-packages.sh: %s\n' "$*" >&2; }

missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} (needs root and apt-get: apt-get install --no-install-recommends" \
        "${missing[*]}); the tests that need it are skipped outside CI"
    exit 0
fi
say "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
