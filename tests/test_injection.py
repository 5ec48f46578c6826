"""Nothing from a config reaches a script or a file name unchecked (trainer/safe_text.py).

Each hostile value goes in through the command line (`grpolab sweep --detach launcher=slurm`, Hydra's
quoted-string grammar) and, when accepted, all the way through the real sbatch script submitit
writes for grpolab: a stub ``sbatch`` keeps the script, and bash then runs it against a stub ``srun``
that records its argv and environment. A value that must be refused is refused before anything is
written, in one line that names the key. Which one is which is decided here, by this file's own
rules, not by asking the code under test.
"""

from __future__ import annotations

import re
import shlex
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from sweeps.cli import main

PWNED = "PWNED"  # every injection tries to create this file (in the test's directory)
LONG = 5000


def hostile_values(pwned: str) -> list[str]:
    touch = f"touch {pwned}"
    return [
        f"x\n{touch}", f"x\r{touch}", "x\x00y", "x\x1b[31mred", f"x\x85{touch}", f"x\u2028{touch}", "x\ty",
        f"x\u2029{touch}", "x\x7fy", "x\x9by",
        f"$({touch})", f"`{touch}`", f"x;{touch}", f"x' ; {touch}; '", f'x" ; {touch}; "', f"x && {touch} || y",
        f"x | {touch} > y < z &", f"--wrap={touch}", "-rf", f"\\ {touch}", f"x\\'; {touch}; '", "A" * LONG,
    ]


NAME_ONLY = [".", "..", "../escape", "a/nested", "/abs/dir", "ok-name_1.2", "A" * 101]
# launcher.account and launcher.qos take launcher.partition's path; tracker.* strings go to no script.
KEYS = ["sweep.id", "paths.output_root", "launcher.partition", "launcher.constraint", "+launcher.sbatch_extra.comment",
        "+launcher.env.GRPOLAB_PROBE", "tracker.tags", "tracker.project"]
ENV_NAMES = ["1ABC", "A-B", "\u00c4B", "_OK1"]  # as +launcher.env.<name>=1 (bash exports ASCII names only)
SBATCH_OPTION = {"launcher.partition": "partition", "launcher.constraint": "constraint",
                 "+launcher.sbatch_extra.comment": "comment"}
# What submitit writes for every job array of conf/launcher/slurm.yaml, whatever else the config says.
ALWAYS = {"array", "cpus-per-task", "error", "gpus-per-task", "job-name", "nodes", "ntasks-per-node", "open-mode",
          "output", "signal", "time", "wckey"}


def cases() -> list[tuple[str, str]]:
    out = [(key, value) for key in KEYS for value in hostile_values(PWNED)]
    return out + [("sweep.id", v) for v in NAME_ONLY] + [(f"+launcher.env.{n}", "1") for n in ENV_NAMES]


def _control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")  # C0, DEL, C1; line and paragraph separators


def must_be_refused(key: str, value: str) -> bool:
    """This file's own rules: what may not become a script line, a file name or an env name."""
    if any(_control(ch) for ch in value):
        return True
    if key == "sweep.id":  # one directory: letters, digits, ._-; no leading '.' or '-'; at most 100
        return not (0 < len(value) <= 100 and all(c.isascii() and (c.isalnum() or c in "._-") for c in value)
                    and value[0] not in ".-")
    if key == "paths.output_root":
        return any(len(part) > 255 for part in value.split("/"))
    if key.startswith("+launcher.env.") and key != "+launcher.env.GRPOLAB_PROBE":
        name = key.rsplit(".", 1)[1]
        return not (name.isascii() and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_"
                                                                                      for c in name))
    return False


def hydra_quoted(value: str) -> str:
    """``value`` as a Hydra quoted string: a quote, and the backslashes before one or at the end, escaped."""
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value) + "'"


def override(key: str, value: str) -> str:
    quoted = hydra_quoted(value)
    return f"{key}=[{quoted}]" if key == "tracker.tags" else f"{key}={quoted}"


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _sbatch_options(script: str) -> dict[str, list[str]]:
    """Each ``#SBATCH --opt=value`` line, as sbatch reads it: only before the first command line."""
    options: dict[str, list[str]] = {}
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            opt, _, value = line[len("#SBATCH --"):].partition("=")
            options[opt] = shlex.split(value)
    return options


@pytest.mark.slow
@pytest.mark.parametrize("key,value", cases(), ids=lambda v: ascii(v)[:40])
def test_a_hostile_value_is_refused_in_one_line_or_reaches_the_script_quoted(key, value, stub_slurm, capsys):
    work, scripts, record = stub_slurm
    pwned = work / PWNED
    value = value.replace(PWNED, str(pwned))
    args = ["sweep", "--detach", "launcher=slurm", "launcher.snapshot_code=false", "paths.output_root=out",
            "sweep.id=inj", "seed=0,1", override(key, value)]
    before = _files(work)
    code = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err and not pwned.exists()
    if must_be_refused(key, value):
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("config error: "), err
        assert key.lstrip("+").split(".")[0] in lines[0] and key.rsplit(".", 1)[-1] in lines[0], lines[0]
        assert _files(work) == before and not list(scripts.iterdir())  # nothing written, nothing submitted
        return
    assert code == 0, err
    script = (scripts / "job.sh").read_text()
    options = _sbatch_options(script)
    expected = ALWAYS | ({SBATCH_OPTION[key]} if key in SBATCH_OPTION else set())
    assert set(options) == expected, script
    if key in SBATCH_OPTION:
        assert options[SBATCH_OPTION[key]] == [value]  # one literal argument, as given
    run = subprocess.run(["bash", str(scripts / "job.sh")], capture_output=True, text=True, cwd=work, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not pwned.exists(), script
    argv = (record / "argv").read_bytes().decode().split("\0")[:-1]
    root = Path(value if key == "paths.output_root" else "out")
    logs = (work / root).absolute() / "sweeps" / (value if key == "sweep.id" else "inj") / "logs" / "%j"
    # srun ran once: the job's Python through sweeps.job_boot (stop signals held while it starts)
    assert argv[-8:] == [sys.executable, "-u", "-m", "sweeps.job_boot", "-u", "-m", "submitit.core._submit",
                         str(logs)], argv
    env = dict(e.split("=", 1) for e in (record / "env").read_bytes().decode().split("\0") if "=" in e)
    if key == "+launcher.env.GRPOLAB_PROBE":
        assert env["GRPOLAB_PROBE"] == value  # the job's environment holds it exactly
    sweep = logs.parent.parent
    modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in sweep.rglob("*") if p.is_file()}
    assert modes == {"0o600"}  # sweep.json, jobs.json, the pickles


@pytest.mark.parametrize("key", ["sweep.id", "tune.study_name"])
@pytest.mark.parametrize("value", [".", "..", "../x", "a/nested", "/abs/dir", "-rf", ".hidden", "a b", "x" * 101, ""])
def test_a_name_that_becomes_a_directory_is_refused_in_one_line(key, value, tmp_path):
    from sweeps.compose import compose
    from trainer.knobs import ConfigError

    with pytest.raises(ConfigError) as e:
        compose([f"paths.output_root={tmp_path}", f"{key}={hydra_quoted(value)}"])
    shown = repr(value) if len(value) < 50 else f"{repr(value)[:80]}... ({len(value)} chars)"
    assert str(e.value) == (f"{key}={shown}: must be 1-100 of letters, digits, '.', '_', '-', not starting with '.' "
                            "or '-' (it names a directory)")


@pytest.mark.parametrize("value", ["kl", "kl_search-2.v1", "0", "_x", "a..b", "x" * 100])
def test_a_safe_name_is_taken_as_given(value, tmp_path):
    from sweeps.compose import compose

    assert compose([f"paths.output_root={tmp_path}", f"sweep.id={value}"]).sweep.id == value
