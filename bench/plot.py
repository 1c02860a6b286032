#!/usr/bin/env python3
"""Draws bench/results/latency-vs-load.png from bench/results/suite-latest.json (bench/suite).

Two panels, 1 KiB get and 1 KiB durable put, open loop: x = offered load (ops/s), y = latency in µs
(log scale), one line each for p50, p90, p99 and p99.9, and a horizontal line at 1 ms.

Usage: bench/plot.py [SUITE_JSON [OUT_PNG]]

Needs gnuplot with the pngcairo terminal (Debian: apt-get install gnuplot-nox) and the Python
standard library only.
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_IN = os.path.join(HERE, "results", "suite-latest.json")
DEFAULT_OUT = os.path.join(HERE, "results", "latency-vs-load.png")
PCTS = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9")]
PANELS = [("get", "1 KiB get, 64 connections, open loop"), ("put", "1 KiB durable put, 64 connections, open loop")]


def datablock(name, points):
    lines = [f"${name} << EOD", "# offered p50 p90 p99 p99.9 (µs)"]
    for p in sorted(points, key=lambda p: p["offered_ops_per_s"]):
        vals = [p.get(k) for k, _ in PCTS]
        # log scale: a latency of 0 µs (below the histogram's resolution) is drawn at 1 µs
        vals = ["NaN" if v is None else str(max(float(v), 1.0)) for v in vals]
        lines.append(" ".join([str(p["offered_ops_per_s"])] + vals))
    lines.append("EOD")
    return lines


def script(doc, out):
    ctx = doc.get("context", {})
    sweep = doc.get("sweep") or {}
    title = (f"Candybox latency vs offered load ({ctx.get('commit', '?')}, {ctx.get('date_utc', '?')}, "
             f"node on core 0, candybox-bench on core 1)")
    s = []
    for kind, _ in PANELS:
        if not sweep.get(kind):
            sys.exit(f"plot.py: no sweep points for '{kind}' in the suite JSON")
        s += datablock(kind, sweep[kind])
    s += [
        "set terminal pngcairo size 1400,600 noenhanced font 'DejaVu Sans,10'",
        f"set output '{out}'",
        f"set multiplot layout 1,2 title '{title}'",
        "set logscale y",
        "set grid xtics ytics mytics",
        "set xlabel 'offered load (ops/s)'",
        "set ylabel 'latency (µs, log scale)'",
        "set key top left",
        "set format x '%.0s%c'",
        "set format y '%.0f'",
    ]
    for kind, label in PANELS:
        peak = max(p["offered_ops_per_s"] for p in sweep[kind])
        s.append(f"set title '{label} (100% = {peak:,.0f} ops/s, closed-loop peak)'")
        s.append(f"set xrange [0:{peak * 1.08:.0f}]")
        plots = [f"${kind} using 1:{i + 2} with linespoints lw 2 pt 7 title '{name}'"
                 for i, (_, name) in enumerate(PCTS)]
        plots.append("1000 with lines dt 2 lw 2 lc rgb 'red' title '1 ms'")
        s.append("plot " + ", \\\n     ".join(plots))
    s.append("unset multiplot")
    return "\n".join(s) + "\n"


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_IN
    out = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUT
    if src in ("-h", "--help"):
        print(__doc__)
        return
    gp = shutil.which("gnuplot")
    if not gp:
        sys.exit("plot.py: gnuplot is not installed (apt-get install gnuplot-nox)")
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    if "'" in out:
        sys.exit("plot.py: the output path must not contain a quote")
    text = script(doc, out)
    r = subprocess.run([gp], input=text, text=True, capture_output=True)
    if r.returncode != 0 or not os.path.exists(out):
        sys.exit(f"plot.py: gnuplot failed ({r.returncode}):\n{r.stderr}")
    print(f"plot.py: wrote {out}")


if __name__ == "__main__":
    main()
