#!/usr/bin/env bash
# Debian packages the slow tests use: pdflatex with siunitx (the LaTeX table compiles; pdftotext reads
# it back), headless Chromium (the HTML report renders) and a single-node SLURM cluster with accounting (slurm/install.sh).
# Idempotent; installs only what is missing. Without root or apt it says so and returns 0: the tests
# that need a missing tool skip with that reason.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "system-deps: not root or no apt-get; pdflatex/chromium/slurm tests will skip if the tools are absent"
  exit 0
fi
bash "$here/apt-install-missing.sh" texlive-latex-base texlive-latex-recommended texlive-science \
  poppler-utils chromium fonts-dejavu-core \
  || echo "system-deps: could not install pdflatex/chromium; those tests will skip"
bash "$here/../slurm/install.sh" || echo "system-deps: SLURM packages not installed; the SLURM tests will skip"
exit 0
