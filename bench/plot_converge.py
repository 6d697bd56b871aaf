#!/usr/bin/env python3
"""plot_converge.py: draws bench/converge's CSVs as SVG.

One picture per engine (docs/img/converge-<engine>.svg): the endpoint's
limit over time from every start, with a line at the engine's real
capacity, and below it the TTFT p90 the limit rule saw (sluice's /health,
from the dispatch to the engine).  With --before DIR, that run's limits
(an older rule, say) are drawn too, dashed and paler.

    bench/plot_converge.py                       # the newest bench/results/converge-*
    bench/plot_converge.py bench/results/converge-20261206-161500 --before bench/results/before

The SVG is written by hand (no plotting library), so the picture is the
same on every machine and the tool needs nothing but python3.
"""
import argparse
import csv
import glob
import math
import os
import re
import sys
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
W, H = 760, 520
LEFT, RIGHT, TOP = 64, 150, 40
PANEL_H, GAP = 190, 60


def load(folder):
    """{engine: {start: [rows]}} from folder's <engine>-start<N>.csv."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "*-start*.csv"))):
        m = re.match(r"(.+)-start(\d+)\.csv$", os.path.basename(path))
        if not m:
            continue
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f)]
        if rows:
            runs.setdefault(m.group(1), {})[int(m.group(2))] = rows
    return runs


def nice_step(span, ticks=5):
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for k in (1, 2, 2.5, 5, 10):
        if raw <= k * mag:
            return k * mag
    return 10 * mag


def fnum(v):
    return ("%g" % v) if abs(v) < 1e6 else "%.2e" % v


class Panel:
    def __init__(self, top, xmax, ymax, title, ylabel):
        self.top, self.xmax, self.title, self.ylabel = top, xmax, title, ylabel
        self.ystep = nice_step(ymax)
        self.ymax = math.ceil(ymax / self.ystep) * self.ystep
        self.xstep = nice_step(xmax, 6)
        self.w = W - LEFT - RIGHT

    def x(self, t):
        return LEFT + self.w * t / self.xmax

    def y(self, v):
        return self.top + PANEL_H * (1 - min(v, self.ymax) / self.ymax)

    def frame(self, out):
        out.append('<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>' % (
            LEFT, self.top - 10, escape(self.title)))
        v = 0.0
        while v <= self.ymax + 1e-9:
            yy = self.y(v)
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>' % (LEFT, yy, LEFT + self.w, yy))
            out.append('<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>' % (LEFT - 6, yy + 4, fnum(v)))
            v += self.ystep
        t = 0.0
        while t <= self.xmax + 1e-9:
            xx = self.x(t)
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#f0f0f0"/>' % (
                xx, self.top, xx, self.top + PANEL_H))
            out.append('<text x="%.1f" y="%d" font-size="11" text-anchor="middle">%s</text>' % (
                xx, self.top + PANEL_H + 15, fnum(t)))
            t += self.xstep
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>' % (
            LEFT, self.top, self.w, PANEL_H))
        out.append('<text x="%d" y="%d" font-size="11" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>'
                   % (16, self.top + PANEL_H // 2, 16, self.top + PANEL_H // 2, escape(self.ylabel)))

    def line(self, out, pts, color, dashed=False, opacity=1.0, width=1.6):
        if not pts:
            return
        d = " ".join("%.1f,%.1f" % (self.x(t), self.y(v)) for t, v in pts)
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"%s opacity="%.2f"/>' % (
            d, color, width, ' stroke-dasharray="5,3"' if dashed else "", opacity))


def series(rows, key):
    pts = []
    for r in rows:
        try:
            pts.append((float(r["t_s"]), float(r[key])))
        except (KeyError, ValueError):
            pass
    return pts


def draw(engine, runs, before, capacity, path):
    every = list(runs.items()) + list(before.items())
    xmax = max(float(rows[-1]["t_s"]) for _, rows in every)
    lmax = max(max(v for _, v in series(rows, "limit")) for _, rows in every)
    tmax = max(max([v for _, v in series(rows, "ttft_p90_ms")] or [1]) for _, rows in runs.items())
    top = Panel(TOP, xmax, max(lmax, capacity + 2), "%s: the endpoint's limit (real capacity %d)" % (engine, capacity),
                "limit (streams)")
    bot = Panel(TOP + PANEL_H + GAP, xmax, tmax * 1.05,
                "%s: TTFT p90 the rule saw, per interval (from dispatch to the engine)" % engine, "ms")
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif">' % (W, H, W, H), '<rect width="100%" height="100%" fill="white"/>']
    top.frame(out)
    bot.frame(out)
    out.append('<text x="%d" y="%d" font-size="11" text-anchor="middle">seconds</text>' % (
        LEFT + top.w // 2, H - 8))
    # The real capacity, and the band within 1 of it.
    out.append('<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="#2ca02c" opacity="0.08"/>' % (
        LEFT, top.y(capacity + 1), top.w, top.y(capacity - 1) - top.y(capacity + 1)))
    out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#2ca02c" stroke-width="1.2" '
               'stroke-dasharray="2,2"/>' % (LEFT, top.y(capacity), LEFT + top.w, top.y(capacity)))
    legend = []
    starts = sorted(set(runs) | set(before))
    for i, s in enumerate(starts):
        c = COLORS[i % len(COLORS)]
        if s in before:
            top.line(out, series(before[s], "limit"), c, dashed=True, opacity=0.45, width=1.2)
            legend.append((c, True, "start %d, before" % s))
        if s in runs:
            top.line(out, series(runs[s], "limit"), c)
            bot.line(out, series(runs[s], "ttft_p90_ms"), c, width=1.2)
            legend.append((c, False, "start %d" % s))
    legend.append(("#2ca02c", True, "capacity %d (±1)" % capacity))
    lx, ly = LEFT + top.w + 14, TOP + 8
    for c, dashed, label in legend:
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>' % (
            lx, ly, lx + 22, ly, c, ' stroke-dasharray="5,3"' if dashed else ""))
        out.append('<text x="%d" y="%d" font-size="11">%s</text>' % (lx + 28, ly + 4, escape(label)))
        ly += 18
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description="Draws bench/converge results as SVG.")
    ap.add_argument("results", nargs="?", help="a bench/converge results folder (default: the newest)")
    ap.add_argument("--before", help="another results folder, drawn dashed (an older rule)")
    ap.add_argument("--capacity", type=int, default=4, help="the engines' real capacity (default 4)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "img"), help="folder for converge-<engine>.svg")
    args = ap.parse_args()
    folder = args.results
    if folder is None:
        found = sorted(glob.glob(os.path.join(ROOT, "bench", "results", "converge-*")))
        if not found:
            sys.exit("plot_converge: no bench/results/converge-* folder; run bench/converge first")
        folder = found[-1]
    runs = load(folder)
    if not runs:
        sys.exit("plot_converge: no <engine>-start<N>.csv in %s" % folder)
    before = load(args.before) if args.before else {}
    os.makedirs(args.out, exist_ok=True)
    for engine, by_start in sorted(runs.items()):
        path = os.path.join(args.out, "converge-%s.svg" % engine)
        draw(engine, by_start, before.get(engine, {}), args.capacity, path)
        print("wrote " + os.path.relpath(path, os.getcwd()))


if __name__ == "__main__":
    main()
