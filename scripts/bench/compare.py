#!/usr/bin/env python3
"""Paired, interleaved cold starts of one binary from two builds, under the local Runtime API of
lambda_start.py: A, B, A, B, ... (--runs pairs, each run one cold start with --invocations
invocations), so that a drift of the machine over the minutes of a run weighs on both sides alike.
One run of each side before them is not counted (it warms the page cache).

Prints one JSON line: per measure (init_without_secret_ms, peak_rss_mib, rss_anon_mib), the median of each side,
their difference (B - A), and the median of the pairs' differences.

usage: compare.py DIR_A DIR_B BINARY EVENT [--runs N] [--invocations N]
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lambda_start import one_run  # noqa: E402

MEASURES = ("init_without_secret_ms", "peak_rss_mib", "rss_anon_mib")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir_a")
    parser.add_argument("dir_b")
    parser.add_argument("binary", help="the binary's file name, the same in both directories")
    parser.add_argument("event")
    parser.add_argument("--runs", type=int, default=20, help="pairs of cold starts")
    parser.add_argument("--invocations", type=int, default=20)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    paths = {side: Path(d) / args.binary for side, d in (("a", args.dir_a), ("b", args.dir_b))}
    for side, path in paths.items():
        if not (path.is_file() and os.access(path, os.X_OK)):
            sys.exit(f"compare: no executable {args.binary} in {path.parent} (side {side.upper()})")
    with open(args.event) as f:
        event = json.load(f)
    # One run of each side first, not counted: the first start of a binary also reads its file
    # from disk, which the later runs find in the page cache.
    for side in ("a", "b"):
        one_run(str(paths[side]), event, args.invocations, os.environ)
    results = {"a": [], "b": []}
    for _ in range(args.runs):
        for side in ("a", "b"):
            results[side].append(one_run(str(paths[side]), event, args.invocations, os.environ))

    summary = {
        "binary": args.binary,
        "event": args.event,
        "a": str(paths["a"].parent),
        "b": str(paths["b"].parent),
        "pairs": args.runs,
        "invocations_per_run": args.invocations,
    }
    for measure in MEASURES:
        a = [r[measure] for r in results["a"]]
        b = [r[measure] for r in results["b"]]
        median_a, median_b = statistics.median(a), statistics.median(b)
        summary[measure] = {
            "a": round(median_a, 2),
            "b": round(median_b, 2),
            "diff": round(median_b - median_a, 2),
            "paired_diff": round(statistics.median(y - x for x, y in zip(a, b)), 2),
        }
    summary["handler_statuses"] = {side: sorted({s for r in rs for s in r["statuses"]}) for side, rs in results.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
