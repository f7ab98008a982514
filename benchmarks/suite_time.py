"""What a change to the tests costs or saves: pytest selections run in two checkouts,
interleaved (before, after, before, after, ...), each timed in CPU seconds of pytest and
its children (what a busy shared machine barely changes) and in wall seconds.

    python benchmarks/suite_time.py --before ../main --after . \
        --select "tests/test_distributed.py -k killed" --select "tests/test_problems.py"

Writes ``--out`` (JSON): every run with its load average, and per selection the median
CPU and wall seconds before and after and their difference.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def run_selection(tree: str, selection: str) -> dict:
    """One pytest run of ``selection`` (arguments split on spaces) in ``tree``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection.split()],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": tree},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    lines = completed.stdout.strip().splitlines()
    return {
        "tree": tree,
        "selection": selection,
        "returncode": completed.returncode,
        "cpu_seconds": round(cpu, 1),
        "wall_seconds": round(wall, 1),
        "summary": lines[-1] if lines else "",
        "load_average_after": os.getloadavg(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="checkout of the baseline")
    parser.add_argument("--after", required=True, help="checkout with the change")
    parser.add_argument("--select", action="append", required=True, help="pytest arguments")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="runs/suite_time.json")
    args = parser.parse_args(argv)
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    document = {"command": " ".join(["python benchmarks/suite_time.py", *sys.argv[1:]])}
    document["load_average_before"] = os.getloadavg()
    runs = []
    for _ in range(args.repeats):
        for selection in args.select:
            for name, tree in trees.items():
                record = {"variant": name, **run_selection(tree, selection)}
                print(json.dumps(record), flush=True)
                runs.append(record)
    document["load_average_after"] = os.getloadavg()
    document["runs"] = runs
    summary = {}
    for selection in args.select:
        row = {}
        for name in trees:
            mine = [r for r in runs if r["variant"] == name and r["selection"] == selection]
            row[f"{name}_cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in mine)
            row[f"{name}_wall_seconds"] = statistics.median(r["wall_seconds"] for r in mine)
        row["cpu_seconds_saved"] = round(row["before_cpu_seconds"] - row["after_cpu_seconds"], 1)
        summary[selection] = row
    document["summary"] = summary
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(document, f, indent=1)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
