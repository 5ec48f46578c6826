#!/usr/bin/env bash
# Install the Debian packages of a single-node SLURM cluster with accounting (idempotent).
# Services are not started here (Debian's policy-rc.d keeps them off); slurm/start.sh runs them.
set -euo pipefail
pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "slurm packages installed: ${pkgs[*]}"
