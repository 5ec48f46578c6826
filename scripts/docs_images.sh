#!/usr/bin/env bash
# Regenerates the figures docs/analysis.md shows, from a synthetic sweep (analysis.synthetic: no
# training): docs/img/report.png, the report rendered by headless Chromium, and
# docs/img/curve_eval_accuracy.png, one learning curve as `grpolab plot` writes it.
#   bash scripts/docs_images.sh [DEMO_SWEEP_DIR]   (needs chromium: apt-get install chromium)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c "from analysis.synthetic import write_synthetic_sweep as w; w('$tmp/synthetic', \
axes={'variant': ['grpo', 'ar', 'lopti'], 'algorithm.kl.coef': [0.0, 0.01]}, seeds=range(4), steps=20, \
eval_every=5, sweep_id='synthetic (analysis.synthetic)')"
labels=(--label "algorithm.kl.coef=β")
"$py" -m analysis.report "$tmp/synthetic" "${labels[@]}" --metrics final_eval_accuracy,best_eval_accuracy,final_reward \
  --out "$tmp/report.html" >/dev/null
"$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
  --user-data-dir="$tmp/profile" --window-size=1280,2400 --screenshot="$here/docs/img/report.png" \
  "file://$tmp/report.html" 2>/dev/null
"$py" -m analysis.plots "$tmp/synthetic" "${labels[@]}" --metrics eval/accuracy --out "$tmp/plots" >/dev/null
cp "$tmp/plots/eval_accuracy.png" "$here/docs/img/curve_eval_accuracy.png"
echo "wrote $here/docs/img/report.png, $here/docs/img/curve_eval_accuracy.png"
# docs/img/report_demo.png from a finished `make demo` sweep, when given: bash scripts/docs_images.sh outputs/sweeps/demo
if [[ $# -ge 1 ]]; then
  "$py" -m analysis.report "$1" --out "$tmp/report_demo.html" >/dev/null
  "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
    --user-data-dir="$tmp/profile" --window-size=1280,2400 --screenshot="$here/docs/img/report_demo.png" \
    "file://$tmp/report_demo.html" 2>/dev/null
  echo "wrote $here/docs/img/report_demo.png"
fi
