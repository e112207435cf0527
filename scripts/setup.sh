#!/usr/bin/env bash
# Installs what aps needs on Debian 12 with Node 20, as root: system packages first (native
# addons build against them), then the npm packages, then the build. Idempotent.
#   bash scripts/setup.sh            packages + npm ci + build
#   bash scripts/setup.sh --system   also: user aps, /etc/aps, /var/lib/aps, /usr/local/bin links,
#                                    and the systemd unit (not started)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# build packages always; the test peers too (npm test talks to real clients and servers)
mapfile -t pkgs < <(awk '/^(build|test) /{print $2}' scripts/packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # DHCP servers and fail2ban come as test tools: do not let their packages start services
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; }
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci --no-audit --no-fund
npm run build

if [ "${1:-}" = "--system" ]; then
  id aps >/dev/null 2>&1 || useradd --system --home-dir /var/lib/aps --shell /usr/sbin/nologin aps
  install -d -o aps -g aps -m 0750 /var/lib/aps /var/lib/aps/firmware
  if [ ! -e /etc/aps/aps.ini ]; then
    install -d -m 0755 /etc/aps
    cp -rn etc/. /etc/aps/
    sed -i 's#^;state_dir = ./var#state_dir = /var/lib/aps#; s#^;firmware_dir = ./var/firmware#firmware_dir = /var/lib/aps/firmware#' /etc/aps/aps.ini
    chown -R root:aps /etc/aps && chmod -R g+rX,o-rwx /etc/aps
  fi
  ln -sf "$PWD/bin/apsd" /usr/local/bin/apsd
  ln -sf "$PWD/bin/apsctl" /usr/local/bin/apsctl
  install -m 0644 systemd/apsd.service /etc/systemd/system/apsd.service
  command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true
  echo "installed: systemctl enable --now apsd"
fi
