"""Reporting: utilisation, goal ratios, Markdown tables, plots and the JSON file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "Goal",
    "GOALS",
    "add_utilisation",
    "goal_ratios",
    "goal_lines",
    "write_plots",
    "results_table",
    "write_json",
]


def add_utilisation(points: list[dict[str, Any]], peak: float) -> None:
    """Every method at a point does jaxgd's work: its FLOPs, its utilisation."""
    flops = {
        (p["batch_size"], p["configs"]): p["flops_per_step"]
        for p in points
        if p["method"] == "jaxgd" and p.get("flops_per_step")
    }
    for point in points:
        per_step = flops.get((point["batch_size"], point["configs"]))
        point["flops_per_step"] = per_step
        if per_step is None:
            point["achieved_flops_per_second"] = point["mfu"] = None
            continue
        achieved = per_step * point["steps_per_config"] / point["run_seconds_median"]
        point["achieved_flops_per_second"] = achieved
        point["mfu"] = achieved / peak


class Goal(NamedTuple):
    """jaxgd at least ``ratio`` times as fast as ``method`` (that method's run seconds /
    jaxgd's, at the batch-size sweep's K) at every batch size measured in
    ``batch_sizes`` (None: every batch size measured)."""

    method: str
    ratio: float
    batch_sizes: tuple[int, int] | None = None  # (smallest, largest), both included

    @property
    def text(self) -> str:
        if self.batch_sizes is None:
            where = "at every batch size"
        elif self.batch_sizes[0] == self.batch_sizes[1]:
            where = f"at B={self.batch_sizes[0]}"
        else:
            where = f"at every B in [{self.batch_sizes[0]}, {self.batch_sizes[1]}]"
        return f"jaxgd / {self.method} >= {self.ratio:.1f}x {where}"


# The throughput goals (benchmarks/README.md, "Goals"); MFU is reported, not a ratio.
GOALS = (
    Goal("optax_loop", 20.0, (16, 16)),
    Goal("torch_eager", 5.0, (1, 128)),
    Goal("torch_func", 1.5),
    # The baseline a JAX expert writes by hand: jaxgd's guard, masking and bookkeeping
    # must cost nothing measurable against it.
    Goal("jax_scan_vmap", 1.0),
)


def goal_ratios(points: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """How many times faster jaxgd is than each baseline, per batch size, at K=count:
    from the medians, and from the fastest repeats (other processes only add time, so
    the minimum is the least disturbed estimate on a shared machine); and each of
    ``GOALS`` checked against the medians (``met`` None: not measured in this run)."""
    by = {(p["method"], p["batch_size"]): p for p in points if p["configs"] == count}
    ratios: dict[str, dict[str, float]] = {}
    ratios_min: dict[str, dict[str, float]] = {}
    for (method, size), point in sorted(by.items(), key=lambda kv: kv[0][1]):
        reference = by.get(("jaxgd", size))
        if method == "jaxgd" or reference is None:
            continue
        ratios.setdefault(method, {})[str(size)] = (
            point["run_seconds_median"] / reference["run_seconds_median"]
        )
        ratios_min.setdefault(method, {})[str(size)] = (
            point["run_seconds_min"] / reference["run_seconds_min"]
        )
    mfu = {
        f"B={p['batch_size']},K={p['configs']}": p["mfu"]
        for p in sorted(points, key=lambda p: (p["configs"], p["batch_size"]))
        if p["method"] == "jaxgd" and p["mfu"] is not None
    }
    return {
        "configs": count,
        "speedup_over": ratios,
        "speedup_over_from_min": ratios_min,
        "jaxgd_mfu": mfu,
        "targets": [_check(goal, ratios.get(goal.method, {})) for goal in GOALS],
    }


def _check(goal: Goal, ratios: dict[str, float]) -> dict[str, Any]:
    """The goal, its ratios at the batch sizes it covers, the smallest, and whether met."""
    low, high = goal.batch_sizes or (1, float("inf"))
    covered = {size: ratio for size, ratio in ratios.items() if low <= int(size) <= high}
    worst = min(covered.values()) if covered else None
    return {
        "goal": goal.text,
        "method": goal.method,
        "ratio": goal.ratio,
        "ratios": covered,
        "worst": worst,
        "met": None if worst is None else worst >= goal.ratio,
    }


def write_plots(result: dict[str, Any], out: str) -> list[str]:
    """Throughput vs batch size (log-log) and vs K, one line per method.

    Built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, as
    ``jaxgd.plots`` does: no GUI backend is touched and pyplot's global state is left
    alone. Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    device = result["device"]
    hardware = device["cpu_model"] if device["platform"] == "cpu" else device["device_kind"]
    title = f"{result['problem']['model']} on {hardware}"
    for sweep_name, axis, label in (
        ("batch_size", "batch_size", "batch size B"),
        ("configs", "configs", "configs K"),
    ):
        points = [p for p in result["points"] if p["sweep"] == sweep_name]
        if not points:
            continue
        fig = Figure(figsize=(11, 4.2), dpi=80)
        left, right = fig.subplots(1, 2)
        for method in result["methods"]:
            mine = sorted((p for p in points if p["method"] == method), key=lambda p: p[axis])
            if not mine:
                continue
            xs = [p[axis] for p in mine]
            left.plot(xs, [p["config_examples_per_second"] for p in mine], "o-", label=method)
            right.plot(xs, [p["steps_per_second"] for p in mine], "o-", label=method)
        fixed = points[0]["configs"] if sweep_name == "batch_size" else points[0]["batch_size"]
        fixed_name = "K" if sweep_name == "batch_size" else "B"
        for ax, ylabel in (
            (left, "config-examples / s (all configs)"),
            (right, "steps / s per config"),
        ):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8)
        fig.suptitle(f"{title}, {fixed_name}={fixed}, {result['epochs']} epochs", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out, f"{result['problem']['name']}_vs_{sweep_name}.png")
        paths.append(_write_atomically(path, FigureCanvasAgg(fig).print_png))
    return paths


def results_table(result: dict[str, Any]) -> str:
    """Markdown tables: median run seconds per method (x: extrapolated), jaxgd's speed-up
    over each, jaxgd's compile seconds and MFU."""
    lines = []
    methods = result["methods"]
    for sweep_name, axis in (("batch_size", "B"), ("configs", "K")):
        points = [p for p in result["points"] if p["sweep"] == sweep_name]
        if not points:
            continue
        fixed = f"K={points[0]['configs']}" if axis == "B" else f"B={points[0]['batch_size']}"
        lines += [
            f"Run seconds (median of {result['repeats']}; * = extrapolated), {fixed}, "
            f"{result['epochs']} epochs of {result['problem']['num_examples']} examples; "
            "in brackets: that method's time / jaxgd's.",
            "",
            "| " + axis + " | " + " | ".join(methods) + " | jaxgd compile s | jaxgd MFU |",
            "|---:" * (len(methods) + 3) + "|",
        ]
        for value in sorted({p[axis == "B" and "batch_size" or "configs"] for p in points}):
            key = "batch_size" if axis == "B" else "configs"
            row = {p["method"]: p for p in points if p[key] == value}
            jaxgd_point = row.get("jaxgd")
            cells = []
            for method in methods:
                point = row.get(method)
                if point is None:
                    cells.append("")
                    continue
                text = f"{point['run_seconds_median']:.3g}" + ("*" if point["extrapolated"] else "")
                if jaxgd_point is not None and method != "jaxgd":
                    ratio = point["run_seconds_median"] / jaxgd_point["run_seconds_median"]
                    text += f" ({ratio:.1f}x)"
                cells.append(text)
            compile_text = mfu_text = ""
            if jaxgd_point is not None:
                compile_text = f"{jaxgd_point['compile_seconds']:.2f}"
                if jaxgd_point["mfu"] is not None:
                    mfu_text = f"{jaxgd_point['mfu']:.0%}"
            lines.append(f"| {value} | " + " | ".join(cells) + f" | {compile_text} | {mfu_text} |")
        lines.append("")
    return "\n".join(lines)


def goal_lines(result: dict[str, Any]) -> list[str]:
    """jaxgd's speed-up over each baseline per batch size, and its MFU, one line each."""
    lines = []
    goals = result["goals"]
    for method, ratios in goals["speedup_over"].items():
        text = " ".join(f"B={b}:{r:.1f}x" for b, r in ratios.items())
        lines.append(f"jaxgd vs {method} (K={goals['configs']}): {text}")
    if goals["jaxgd_mfu"]:
        text = " ".join(f"{point}:{m:.0%}" for point, m in goals["jaxgd_mfu"].items())
        lines.append(f"jaxgd MFU: {text}")
    for target in goals.get("targets", []):
        if target["met"] is not None:
            verdict = "met" if target["met"] else "NOT met"
            lines.append(f"goal {target['goal']}: {verdict} (smallest {target['worst']:.2f}x)")
    return lines


def write_json(result: dict[str, Any], path: str) -> str:
    """Write the result as JSON to ``path``; returns the path."""

    def dump(temporary: str) -> None:
        with open(temporary, "w") as file:
            json.dump(result, file, indent=1)

    return _write_atomically(path, dump)


def _write_atomically(path: str, write: Callable[[str], Any]) -> str:
    """``write(temporary)`` in the target folder, then rename: never a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
