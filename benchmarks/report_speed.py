"""How long the sweep report takes, and how much memory, as the number of configs grows.

python benchmarks/report_speed.py --out benchmarks/results        # 100 ... 10,000 configs
python benchmarks/report_speed.py --quick                          # seconds; the test runs it

Goal (issue 12): the whole report (every plot, report.html, report.md) under 10 s and
1 GB at 10,000 configs. Each measurement runs in a fresh subprocess, so its peak
resident memory (``ru_maxrss``) is its own: the Python process, NumPy, JAX and
matplotlib imported, the synthetic result, and the report. The result is synthetic
(``synthetic_result``: made-up loss curves of a random or a grid space with seeds and
diverged configs), so the benchmark times the report alone, not a sweep.

"before" rows time the plots of commit 3c751f8 (``git show 3c751f8:jaxgd/plots.py``):
its loss curves (one legend entry per value) and heatmap (a Python loop per cell over
all configs), on the same results, where they finish in reasonable time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "3c751f8"


def synthetic_result(count: int, epochs: int = 20, space: str = "random", seed: int = 0):
    """A ``SweepResult`` of ``count`` configs with plausible loss curves.

    random: learning rate log-uniform in [1e-4, 3], momentum uniform in [0, 0.95],
    batch size one of 32, 128, 512, seeds 0 and 1. grid: 25 learning rates x 20 momenta x
    batch sizes 32, 128, 256, 512 x seeds (``count // 2000`` of them, at least 1). The
    loss decays at a rate set by the effective learning rate lr/(1-m), with noise;
    configs whose effective rate exceeds 3 diverge (NaN from a random epoch on).
    """
    import jaxgd

    rng = np.random.default_rng(seed)
    if space == "grid":
        rates = np.geomspace(1e-4, 3, 25)
        momenta = np.linspace(0, 0.95, 20)
        seeds = max(1, count // (25 * 20 * 4))
        configs = list(
            jaxgd.grid(
                learning_rate=rates.tolist(),
                momentum=momenta.tolist(),
                batch_size=[32, 128, 256, 512],
                seed=list(range(seeds)),
            )
        )
    else:
        rates = np.exp(rng.uniform(np.log(1e-4), np.log(3), count))
        momenta = rng.uniform(0, 0.95, count)
        sizes = rng.choice([32, 128, 512], count)
        configs = [
            {"learning_rate": float(r), "momentum": float(m), "batch_size": int(b), "seed": i % 2}
            for i, (r, m, b) in enumerate(zip(rates, momenta, sizes))
        ]
    configs = [{"optimizer": "sgd", **c} for c in configs]
    count = len(configs)
    lr = np.array([c["learning_rate"] for c in configs])
    momentum = np.array([c["momentum"] for c in configs])
    batch = np.array([c["batch_size"] for c in configs])
    effective = lr / (1 - momentum)
    rate = np.clip(effective * 32 / batch, 1e-5, None)
    epoch = np.arange(1, epochs + 1)
    train = 2.3 * np.exp(-np.outer(rate, epoch) * 2) + 0.05 + 0.02 * rng.random((count, epochs))
    val = train * (1.1 + 0.3 * np.clip(effective - 1, 0, None))[:, None]
    diverged = effective > 3
    start = rng.integers(0, epochs, count)
    mask = diverged[:, None] & (epoch[None, :] > start[:, None])
    train[mask] = np.nan
    val[mask] = np.nan
    steps = np.ceil(1797 * 0.8 / batch).astype(int)
    updates = np.outer(steps, epoch)
    return jaxgd.SweepResult(
        configs=configs,
        history={
            "train_loss": train,
            "val_loss": val,
            "val_accuracy": 1 - val / 2.5,
            "updates": updates,
            "examples_seen": np.outer(np.full(count, 1438), epoch),
            "batch_size": np.repeat(batch[:, None], epochs, axis=1),
        },
        updates=updates[:, -1],
        examples_seen=np.full(count, 1438 * epochs),
        diverged=diverged,
        diverged_step=np.where(diverged, start * steps, -1),
        seconds=np.ones(count),
        compile_seconds=np.ones(count),
        strategy="nested",
        groups=[
            {
                "program": "nested sgd",
                "configs": list(range(count)),
                "slots": count,
                "compile_seconds": 2.0,
                "seconds": 30.0,
            }
        ],
    )


def _before_plots():
    """``jaxgd/plots.py`` as of BEFORE_COMMIT, imported as ``jaxgd.plots_before``."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE_COMMIT}:jaxgd/plots.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = pathlib.Path(tempfile.mkdtemp()) / "plots_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("jaxgd.plots_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure_one(count: int, space: str, what: str, epochs: int) -> dict:
    """Run in the subprocess: build the result, time the report (or a "before" plot)."""
    import jaxgd  # noqa: F401 - imported before the clock starts, as in a run
    from jaxgd import report

    result = synthetic_result(count, epochs, space)
    out = tempfile.mkdtemp()
    env = {"jaxgd": "benchmark"}
    start = time.perf_counter()
    if what == "report":
        written = report.write_report(result, out, space_method=space, env=env)
    elif what == "before_loss_curves":
        written = [_before_plots().loss_curves(result, os.path.join(out, "c.png"))]
    elif what == "before_heatmap":
        written = [_before_plots().final_loss_heatmap(result, os.path.join(out, "h.png"))]
    else:
        raise ValueError(what)
    seconds = time.perf_counter() - start
    sizes = sum(os.path.getsize(os.path.join(out, w)) for w in written)
    html = os.path.join(out, "report.html")
    return {
        "configs": len(result),
        "space": space,
        "what": what,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes_written": sizes,
        "report_html_bytes": os.path.getsize(html) if os.path.exists(html) else None,
        "files": written,
    }


def _in_subprocess(count: int, space: str, what: str, epochs: int, timeout: float) -> dict:
    call = f"report_speed.measure_one({count}, {space!r}, {what!r}, {epochs})"
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
        f"import report_speed; print(json.dumps({call}))"
    )
    try:
        completed = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    except subprocess.TimeoutExpired:
        return {"configs": count, "space": space, "what": what, "timed_out_after": timeout}
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/report_speed.py")
    parser.add_argument("--out", help="folder for report_speed.json")
    parser.add_argument("--quick", action="store_true", help="100 configs only (seconds)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    plan = [(100, "random", "report")]
    if not args.quick:
        plan = [
            (count, space, "report")
            for count, space in (
                (100, "random"),
                (1000, "random"),
                (10_000, "random"),
                (2000, "grid"),
                (10_000, "grid"),
            )
        ] + [
            (count, "random", what)
            for count in (100, 300)
            for what in ("before_loss_curves", "before_heatmap")
        ]
    points = []
    for count, space, what in plan:
        before = what.startswith("before")  # minutes each: timed once, cut off at 300 s
        for repeat in range(1 if args.quick or before else args.repeats):
            point = _in_subprocess(count, space, what, args.epochs, timeout=300 if before else 600)
            point["repeat"] = repeat
            points.append(point)
            print(json.dumps({k: v for k, v in point.items() if k != "files"}), flush=True)
    record = {
        "schema": 1,
        "goal": "the whole report under 10 s and 1 GB at 10,000 configs",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "load_average_before": load_before,
        "epochs": args.epochs,
        "points": points,
        "load_average_after": os.getloadavg(),
    }
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "report_speed.json"), "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
