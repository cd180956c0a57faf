"""Benchmark 6: the whole `python -m render --stack dev` command at 1 and at 64 workers."""

from __future__ import annotations

import statistics
import sys
import time

from bench.harness import Bench


def render(b: Bench) -> None:
    times = {}
    for workers in (1, 64):
        runs = []
        for i in range(b.size["render_repeats"]):
            out = b.out / "render" / f"w{workers}-{i}"
            t = time.monotonic()
            b.sup.run("render", f"render-w{workers}-{i}", [
                sys.executable, "-m", "render", "--stack", "dev", "--out", str(out),
                "--set", f"workers={workers}",
                "--set", f"training.batchSize={max(64, 2 * (workers + 1))}"], dict(b.env), timeout=300)
            runs.append(time.monotonic() - t)
        times[workers] = statistics.median(runs)
    b.values["render_s_1"] = round(times[1], 3)
    b.values["render_s_64"] = round(times[64], 3)
    b.details["render"] = times
    b.rows.append(("6 render", f"python -m render --stack dev (whole command, median of "
                   f"{b.size['render_repeats']}): 1 worker {times[1]:.2f} s, 64 workers {times[64]:.2f} s"))
