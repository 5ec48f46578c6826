"""The math verifiers side by side: agreement, adversarial inputs, reward time per step.

    python -m benchmarks.rewards [--workers 2] [--timeout 5] [--out benchmarks/results/rewards.md]

1. Agreement with independent verdicts on math-verify's own test cases (tests/data/math_verify_cases.json)
   and on the hand-judged corpus (tests/data/reward_corpus.json): exact, math_verify, exact+math_verify
   (golds read as ``JsonlTask`` reads them, math-verify in the pool), and math-verify's default
   (``verify(parse(gold), parse(pred))`` on the raw strings, in this process): correct, false
   positives, false negatives.
2. Adversarial strings through the pool, from the main thread and from a worker thread: wall time and
   verdict of each (every one must end by the deadline, as a counted timeout or a verdict).
3. Reward time of one step's 512 MATH-style completions: exact only, combined, math-verify only
   (median of 3 batches, warm pool), beside the tiny model's GRPO step time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from benchmarks.machine import environment
from benchmarks.report import bullets, command_line, markdown_table, write_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
TINY_STEP_S = 0.858  # benchmarks/results/summary.md: grpolab's GRPO step, 64 prompts x 8 = 512 completions
ADVERSARIAL = {
    "9^{9^{9^9}}": r"$\boxed{9^{9^{9^9}}}$",
    "2^{2^{40}}": r"$\boxed{2^{2^{40}}}$",
    "3^{10^9}": r"$\boxed{3^{10^9}}$",
    "1 MB of digits": "1" * 1_000_000,
    "2,000 unclosed \\boxed{\\frac{1}{": r"\boxed{\frac{1}{" * 2000,
    "5,000-deep braces": "{" * 5000 + "1" + "}" * 5000,
}


def _cases():
    from trainer.tasks.jsonl import gold_answer

    mv = json.loads((DATA / "math_verify_cases.json").read_text())["cases"]
    corpus = json.loads((DATA / "reward_corpus.json").read_text())["cases"]
    return {
        f"math-verify's own test cases ({len(mv)})": [
            (c["gold"], gold_answer(c["gold"]), c["pred"], bool(c["expected"])) for c in mv],
        f"hand-judged MATH/GSM8K corpus ({len(corpus)})": [(c["gold"], c["gold"], c["completion"], c["expected"])
                                                           for c in corpus],
    }


def _counts(verdicts, expected):
    ok = sum(v == e for v, e in zip(verdicts, expected))
    fp = sum(v and not e for v, e in zip(verdicts, expected))
    fn = sum(e and not v for v, e in zip(verdicts, expected))
    return ok, fp, fn


def agreement(workers: int, timeout_s: float) -> str:
    from math_verify import parse, verify

    from trainer.tasks import verifier as vf

    rows = []
    for corpus, cases in _cases().items():
        expected = [e for *_, e in cases]
        for name in vf.NAMES:
            v = vf.Verifier(name, workers, timeout_s)
            judged = v.judge([p for _, _, p, _ in cases], [g for _, g, _, _ in cases])
            ok, fp, fn = _counts(judged.correct, expected)
            rows.append([corpus, name, f"{ok}/{len(cases)}", str(fp), str(fn), str(judged.timeouts)])
        default = [bool(verify(parse(raw), parse(p))) for raw, _, p, _ in cases]
        ok, fp, fn = _counts(default, expected)
        rows.append([corpus, "math-verify default (raw gold, in process)", f"{ok}/{len(cases)}", str(fp), str(fn), "—"])
    return markdown_table(["corpus", "verifier", "agrees", "false positives", "false negatives", "timeouts"],
                          "llrrrr", rows)


def adversarial(workers: int, timeout_s: float) -> str:
    from trainer.tasks import verifier as vf

    rows = []
    for where in ("main thread", "worker thread"):
        for label, text in ADVERSARIAL.items():
            out: dict = {}

            def one(out=out, text=text):
                t0 = time.monotonic()
                judged = vf.Verifier(vf.COMBINED, workers, timeout_s).judge([text], ["2"])
                out.update(s=time.monotonic() - t0, j=judged)

            if where == "main thread":
                one()
            else:
                t = threading.Thread(target=one)
                t.start()
                t.join()
            j = out["j"]
            verdict = "timeout (counted)" if j.timeouts else "error (counted)" if j.errors else f"scored {j.correct[0]}"
            rows.append([where, label, f"{out['s']:.2f}", verdict])
    return markdown_table(["caller", "input", "seconds", "verdict"], "llrl", rows)


def step_completions(n: int = 512) -> tuple[list[str], list[str]]:
    """``n`` MATH-style completions, 8 per prompt as in a GRPO step: a reasoning preamble of ~1,200
    characters, then either a boxed integer (3 of 5 prompts, half of those right; MATH's golds are
    mostly integers) or one of the hand-judged corpus's endings (fractions, sets, intervals, units, ...)."""
    corpus = json.loads((DATA / "reward_corpus.json").read_text())["cases"]
    preamble = ("Let us set up the problem. We compute the quantities step by step, writing each intermediate "
                "value: $a = 3$, $b = 4$, so $a^2 + b^2 = 25$ and $\\sqrt{25} = 5$. ") * 8
    comps, golds = [], []
    for i in range(n):
        prompt, sample = divmod(i, 8)
        if prompt % 5 < 3:
            gold = str(17 * prompt + 3)
            ending = f"So the answer is $\\boxed{{{gold if sample % 2 else 17 * prompt + sample}}}$."
        else:
            c = corpus[(prompt * 3 + sample) % len(corpus)]
            gold, ending = c["gold"], c["completion"]
        comps.append(f"Problem {prompt}. " + preamble + ending)
        golds.append(gold)
    return comps, golds


def throughput(workers: int, timeout_s: float) -> tuple[str, dict]:
    from trainer.tasks import verifier as vf

    comps, golds = step_completions()
    rows, seconds = [], {}
    for name in vf.NAMES:
        v = vf.Verifier(name, workers, timeout_s)
        v.judge(comps[:16], golds[:16])  # warm: workers started, golds cached
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            judged = v.judge(comps, golds)
            times.append(time.perf_counter() - t0)
        seconds[name] = statistics.median(times)
        rows.append([name, f"{seconds[name]:.3f}", f"{judged.sent / len(comps):.0%}",
                     f"{seconds[name] / TINY_STEP_S:.1%}", f"{seconds[name] / seconds[vf.EXACT]:.0f}×"])
    return markdown_table(["verifier", "s per 512 completions", "sent to math-verify", "÷ tiny-model step (0.858 s)",
                           "÷ exact"], "lrrrr", rows), seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rewards.md"))
    args = p.parse_args(argv)
    t0 = time.time()
    table_agree = agreement(args.workers, args.timeout)
    print(table_agree, flush=True)
    table_adv = adversarial(args.workers, args.timeout)
    print(table_adv, flush=True)
    table_tp, _ = throughput(args.workers, args.timeout)
    print(table_tp, flush=True)
    text = "\n\n".join([
        "# Math verifiers: agreement, adversarial inputs, reward time",
        f"`{command_line('python -m benchmarks.rewards', argv)}` — {time.time() - t0:.0f} s, "
        f"{args.workers} math-verify workers, deadline {args.timeout:g} s",
        "\n".join(bullets(environment())),
        "## Agreement with independent verdicts", table_agree,
        "## Adversarial inputs (verifier exact+math_verify, gold 2)", table_adv,
        "## Reward time of one step (512 completions, median of 3, warm pool)", table_tp,
    ]) + "\n"
    write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
