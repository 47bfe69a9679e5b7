#!/usr/bin/env bash
# Install the Debian packages given as arguments, only those missing. `make test` and `.ci/run` both call it.
# As root it runs apt-get; otherwise it uses passwordless sudo; failing both, it stops and says what to install.
set -euo pipefail

if (($# == 0)); then
  exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "error: the test suite needs the Debian package(s) $*, and this is not a Debian/Ubuntu system (no dpkg-query)." >&2
  echo "Install the equivalent by hand (for prometheus-alertmanager: Alertmanager 0.25+, binary at" \
    "/usr/bin/prometheus-alertmanager or set VIGIL_ALERTMANAGER_BIN)." >&2
  exit 1
fi

missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "error: missing Debian package(s): ${missing[*]} (needed by the test suite)." >&2
  echo "Not root and no passwordless sudo, so install them yourself, then re-run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "installing Debian packages: ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
