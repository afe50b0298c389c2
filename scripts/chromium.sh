#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (tests/ui/) when it is missing; idempotent.
#
#   scripts/chromium.sh        install /usr/bin/chromium if absent (apt-get, as root)
#
# playwright's own browser download does not work here, so the tests launch this binary
# through playwright (executable_path=/usr/bin/chromium). Without root and without chromium
# it says so and exits 1; the tests then skip (or fail under CI=true).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
say() { printf 'chromium.sh: %s\n' "$*" >&2; }

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    say "$CHROMIUM is missing and installing it needs root: sudo apt-get install -y chromium"
    exit 1
fi
say "installing chromium (Debian package)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
[ -x "$CHROMIUM" ] || { say "apt-get finished but $CHROMIUM is still missing"; exit 1; }
say "installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
