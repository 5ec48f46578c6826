"""`grpolab report`: one self-contained HTML file per sweep with the tables and the plots,
which a headless Chromium opens and renders with the table in it."""
from __future__ import annotations

import base64
import re
import shutil
import statistics
import struct
import subprocess

import pytest

from analysis.records import load_records
from analysis.report import main
from analysis.synthetic import write_synthetic_sweep

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    sweep = write_synthetic_sweep(root / "sweep", axes={"variant": ["grpo", "ar", "lopti"]}, seeds=range(3), steps=6)
    assert main([str(sweep), "--out", str(root / "report.html")]) == 0
    return sweep, root / "report.html"


def grpo_final_acc(sweep):
    df = load_records(sweep)
    return statistics.mean(df.loc[df["variant"] == "grpo", "final_eval_accuracy"])


def test_report_is_self_contained(report):
    sweep, path = report
    html = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", html)  # nothing fetched from elsewhere
    assert "<script" not in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 7 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert html.count('<table class="ablation">') == 2  # summary metrics, then pass@k and diagnostics
    assert f"{grpo_final_acc(sweep):.3f} ± " in html


def _chromium(*args, tmp):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_the_table(report, tmp_path):
    sweep, path = report
    proc = _chromium("--dump-dom", path.as_uri(), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    table = dom[dom.index('<table class="ablation">'):dom.index("</table>")]
    assert "<th>variant</th>" in table and "<th>final eval accuracy</th>" in table
    rows = re.findall(r"<tr><th>(\w+)</th>", table[table.index("<tbody>"):])
    assert rows == ["grpo", "ar", "lopti"]  # plan order
    assert f"{grpo_final_acc(sweep):.3f} ± " in table


@pytest.mark.slow
@needs_chromium
def test_chromium_screenshot_has_the_window_size(report, tmp_path):
    _, path = report
    shot = tmp_path / "report.png"
    proc = _chromium("--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}", path.as_uri(),
                     tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1280, 1600)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
