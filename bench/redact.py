#!/usr/bin/env python3
"""Redactor benchmark: how fast one agent log is redacted, and what the alternatives cost.

    python bench/redact.py            # a 10 MB log, 20 known secrets, a few planted in it
    python bench/redact.py --json

Two logs: plain (words, paths, hex ids) and a worst case where every line also holds every key
format's prefix (`sk-learn`, "bearer", AKIA...), the secrets planted at a few places in each. Measured: `Redactor.text` (what clawfleet runs: substring search per known value,
then one regex per key format tried only when its literal prefix occurs), and for scale one
combined regex of everything (the obvious alternative, which loses the regex engine's fast
literal-prefix search), each as MB/s, best of 3.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import time
from pathlib import Path

try:
    import clawfleet  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clawfleet.redact import FORMATS, REDACTED, Redactor, Secret


PLAIN = ["def", "return", "import", "tests", "passed", "src/clawfleet/runner.py", "git", "diff",
         "token", "error:", "0x7ff3", "assert", "self", "value", "ok", "FAILED"]
# Every key format's literal prefix on every line: each format's regex then has to run.
NEAR_MISSES = PLAIN + ["sk-learn-compat", "bearer x", "AKIA", "ghost", "claw-run"]


def make_log(size: int, secrets: list[str], seed: int = 1, words: list[str] = PLAIN) -> str:
    rng = random.Random(seed)
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choices(words, k=10)) + " " + "".join(rng.choices(string.hexdigits, k=24))
        lines.append(line)
        total += len(line) + 1
    for n, secret in enumerate(secrets[:5]):
        lines[(n + 1) * len(lines) // 7] += f" OPENAI_API_KEY={secret}"
    return "\n".join(lines)


def best_of(function, text: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(7)
    values = ["sk-proj-" + "".join(rng.choices(string.ascii_letters + string.digits, k=40)) for _ in range(20)]
    redactor = Redactor(Secret(v, f"$KEY{n}") for n, v in enumerate(values))
    combined = re.compile("|".join([*(re.escape(v) for v in sorted(values, key=len, reverse=True)),
                                    *(f"(?:{pattern.pattern})" for _, pattern in FORMATS)]), re.S)
    figures = {"log_mb": args.mb, "known_values": len(values)}
    for name, words in (("plain", PLAIN), ("worst", NEAR_MISSES)):
        log = make_log(int(args.mb * 1_000_000), values, words=words)
        clean = redactor.text(log)
        assert not any(v in clean for v in values) and clean.count(REDACTED) >= 5
        size_mb = len(log) / 1_000_000
        seconds = best_of(redactor.text, log)
        figures[f"{name}_redactor_s"] = round(seconds, 4)
        figures[f"{name}_redactor_mb_per_s"] = round(size_mb / seconds, 1)
        figures[f"{name}_known_values_only_s"] = round(best_of(redactor.known, log), 4)
        figures[f"{name}_one_combined_regex_s"] = round(best_of(lambda t: combined.sub(REDACTED, t), log), 4)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for key, value in figures.items():
            print(f"{key:>22}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
