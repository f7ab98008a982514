"""The report of a sweep: ``report.html`` (self-contained) and ``report.md``.

Both say the same things, in this order: the best configs (averaged over seeds), which
hyperparameter mattered most, loss curves of the best configs coloured by it, the final
metric against each hyperparameter, a heatmap per batch size (two-axis grids), parallel
coordinates (random and quasi-random spaces), the best curve per batch size, how many
configs diverged or stopped early and where, compile and run time, and the environment.

The HTML embeds its images as base64 PNGs (it opens from disk, with no server and no
network); the Markdown links the same PNGs, written to ``plots/`` beside it.

"Mattered most" is the correlation ratio η² of the final metric's ranks on each
hyperparameter (Fisher 1925; on ranks, as the Kruskal–Wallis statistic): the share of
the variance of the ranks explained by the hyperparameter's value, with continuous
values cut into 8 quantile bins. Diverged configs rank last, so a learning rate that
diverges shows as important.

Example:
    >>> import jaxgd  # doctest: +SKIP
    >>> jaxgd.report.write_report(result, "runs/digits", metric="val_loss")  # doctest: +SKIP
    ['plots/loss_curves.png', ..., 'report.html', 'report.md']
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._io import atomic_write
from .results import SweepResult

__all__ = ["write_report", "best_configs", "importance", "swept", "environment", "target_metric"]

# Keys that are bookkeeping, not a hyperparameter a reader compares.
_NOT_SWEPT = ("seed",)


def target_metric(result: SweepResult, metric: str | None = None) -> str:
    """``metric`` if given, else ``val_loss`` when recorded, else ``train_loss``."""
    if metric is not None:
        if metric not in result.history:
            raise ValueError(f"metric={metric!r} is not recorded; have {sorted(result.history)}")
        return metric
    return "val_loss" if "val_loss" in result.history else "train_loss"


def swept(result: SweepResult) -> list[str]:
    """The config keys that take more than one value (the seed aside), in config order."""
    names = list(dict.fromkeys(k for c in result.configs for k in c))
    return [
        n for n in names if n not in _NOT_SWEPT and len({str(c.get(n)) for c in result.configs}) > 1
    ]


def _lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def _ranks(result: SweepResult, metric: str) -> np.ndarray:
    """Rank of each config (0: best): those that trained to the end by final metric,
    then those stopped early by their last value, then diverged and non-finite ones."""
    from .plots import final_values

    final = final_values(result, metric)
    bad = np.asarray(result.diverged, bool) | ~np.isfinite(final)
    stopped = np.asarray(result.status) == "stopped"
    signed = np.where(bad, np.inf, final if _lower_is_better(metric) else -final)
    order = np.lexsort((np.arange(len(final)), signed, stopped & ~bad, bad))
    ranks = np.empty(len(final))
    ranks[order] = np.arange(len(final))
    return ranks


def _groups_of(result: SweepResult, name: str) -> np.ndarray:
    """A group index per config for ``name``: its value, or its quantile bin (8) when
    there are more than 12 numeric values."""
    raw = [c.get(name) for c in result.configs]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    if numeric and len(set(raw)) > 12:
        x = np.asarray(raw, dtype=float)
        positive = x.min() > 0
        x = np.log(x) if positive else x
        edges = np.quantile(x, np.linspace(0, 1, 9)[1:-1])
        return np.searchsorted(edges, x, side="right")
    codes = {v: i for i, v in enumerate(dict.fromkeys(str(v) for v in raw))}
    return np.array([codes[str(v)] for v in raw])


def importance(result: SweepResult, metric: str) -> dict[str, float]:
    """η² of the final metric's ranks on each swept hyperparameter, largest first.

    η² = Σ_g n_g (r̄_g − r̄)² / Σ_i (r_i − r̄)²: 1 when the hyperparameter alone orders
    the configs, 0 when it says nothing (module docstring).
    """
    ranks = _ranks(result, metric)
    total = np.sum((ranks - ranks.mean()) ** 2)
    scores = {}
    for name in swept(result):
        groups = _groups_of(result, name)
        counts = np.bincount(groups)
        means = np.bincount(groups, weights=ranks) / np.maximum(counts, 1)
        between = np.sum(counts * (means - ranks.mean()) ** 2)
        scores[name] = float(between / total) if total > 0 else 0.0
    return dict(sorted(scores.items(), key=lambda item: -item[1]))


def best_configs(result: SweepResult, metric: str, count: int = 10) -> list[dict[str, Any]]:
    """The best ``count`` configs by final ``metric`` averaged over their seeds.

    Configs that differ only in their seed form one row: the mean and spread (min–max)
    of the final metric over the seeds, how many seeds, and how many of them diverged or
    were stopped. A row with a diverged seed ranks after every row without one, and a row
    with a seed stopped early (its value: the last before the stop) after every row that
    trained to the end.
    """
    from .plots import final_values

    final = final_values(result, metric)
    statuses = np.asarray(result.status)
    groups: dict[tuple, list[int]] = {}
    for index, config in enumerate(result.configs):
        key = tuple((k, str(v)) for k, v in config.items() if k != "seed")
        groups.setdefault(key, []).append(index)
    names = list(importance(result, metric)) or [k for k in result.configs[0] if k != "seed"]
    sign = 1.0 if _lower_is_better(metric) else -1.0
    rows = []
    for members in groups.values():
        values = final[members]
        finite = values[np.isfinite(values)]
        diverged = int(np.sum(statuses[members] == "diverged"))
        row = {n: result.configs[members[0]].get(n) for n in names}
        row[f"mean_final_{metric}"] = float(finite.mean()) if finite.size else float("nan")
        row["min"] = float(finite.min()) if finite.size else float("nan")
        row["max"] = float(finite.max()) if finite.size else float("nan")
        row["seeds"] = len(members)
        row["diverged"] = diverged
        row["stopped"] = int(np.sum(statuses[members] == "stopped"))
        mean = row[f"mean_final_{metric}"]
        finite_mean = bool(np.isfinite(mean))
        row["_key"] = (
            diverged > 0 or not finite_mean,
            row["stopped"] > 0,
            sign * mean if finite_mean else 0.0,
        )
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_key"))
    if all(r["seeds"] == 1 for r in rows):
        for row in rows:  # one seed each: the spread says nothing
            del row["min"], row["max"], row["seeds"]
    return rows[:count]


def environment(command: str | None = None) -> dict[str, str]:
    """Versions, backend and device, platform, the command that ran (if given), the
    date, and the git commit when jaxgd runs from a source checkout."""
    import jax
    import optax

    from . import __version__

    device = jax.devices()[0]
    record = {
        "jaxgd": __version__,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device": f"{device.device_kind} x {jax.device_count()}",
        "platform": platform.platform(),
        "cpu cores": str(os.cpu_count()),
        "command": command or "",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    commit = _git_commit()
    if commit:
        record["git commit"] = commit
    return {k: v for k, v in record.items() if v}


def _git_commit() -> str | None:
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(folder, ".git")):
        return None
    try:
        completed = subprocess.run(
            ["git", "-C", folder, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None


# --- the document: blocks rendered to Markdown and to HTML ------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


class _Document:
    """Headings, paragraphs, tables and figures, rendered to Markdown and HTML."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple] = []

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None):
        if rows:
            columns = list(columns or rows[0])
            self.blocks.append(
                ("table", columns, [[_cell(r.get(c)) for c in columns] for r in rows])
            )

    def figure(self, name: str, png: bytes, caption: str) -> None:
        self.blocks.append(("figure", name, png, caption))

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if block[0] == "heading":
                lines += [f"## {block[1]}", ""]
            elif block[0] == "paragraph":
                lines += [block[1], ""]
            elif block[0] == "table":
                _, columns, cells = block
                lines.append("| " + " | ".join(c.replace("_", " ") for c in columns) + " |")
                lines.append("|" + "---|" * len(columns))
                lines += ["| " + " | ".join(row) + " |" for row in cells]
                lines.append("")
            else:
                _, name, _, caption = block
                lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
        return "\n".join(lines)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            if block[0] == "heading":
                body.append(f"<h2>{html.escape(block[1])}</h2>")
            elif block[0] == "paragraph":
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif block[0] == "table":
                _, columns, cells = block
                head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                    for row in cells
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            else:
                _, name, png, caption = block
                data = base64.b64encode(png).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(caption)}" '
                    f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}'
                    "</figcaption></figure>"
                )
        return _HTML.format(title=html.escape(self.title), body="\n".join(body))


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ font-size: 1.6em; }} h2 {{ margin-top: 1.8em; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; height: auto; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head>
<body>
{body}
</body></html>
"""


# --- assembling the report -------------------------------------------------------------


def _status_rows(result: SweepResult, names: Sequence[str]) -> list[dict[str, Any]]:
    """Per value (or quantile bin) of each hyperparameter where configs diverged: how
    many configs ran to the end, diverged, were stopped."""
    statuses = np.asarray(result.status)
    rows = []
    for name in names:
        groups = _groups_of(result, name)
        values = [c.get(name) for c in result.configs]
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            counts = {
                s: int(np.sum(statuses[members] == s)) for s in ("running", "diverged", "stopped")
            }
            if counts["diverged"] == 0:
                continue
            shown = [values[i] for i in members]
            if len({str(v) for v in shown}) == 1:
                label = _cell(shown[0])
            else:
                label = f"{_cell(min(shown))} – {_cell(max(shown))}"
            rows.append(
                {
                    "hyperparameter": name,
                    "value": label,
                    "configs": len(members),
                    "trained to the end": counts["running"],
                    "diverged": counts["diverged"],
                    "stopped early": counts["stopped"],
                }
            )
    return rows


def _is_grid(result: SweepResult, names: Sequence[str]) -> bool:
    """Whether every combination of the swept values occurs (a full grid)."""
    distinct = [len({str(c.get(n)) for c in result.configs}) for n in names]
    combos = {tuple(str(c.get(n)) for n in names) for c in result.configs}
    return len(combos) == int(np.prod(distinct))


def write_report(
    result: SweepResult,
    out: str | os.PathLike,
    *,
    metric: str | None = None,
    top: int = 10,
    title: str | None = None,
    space_method: str | None = None,
    wall_seconds: float | None = None,
    plots: bool = True,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Write ``report.html``, ``report.md`` and their PNGs (``plots/``) to ``out``.

    Args:
        result: the sweep.
        out: the folder.
        metric: the target metric (default ``val_loss`` when recorded, else
            ``train_loss``); lower is better for names ending in "loss".
        top: the loss curves drawn (the best configs) and the parallel-coordinates lines
            highlighted.
        title: the report's title.
        space_method: "grid", "random" or "quasirandom", when known; parallel
            coordinates are drawn for non-grid spaces (and for spaces that are not a
            full grid when unknown).
        wall_seconds: the whole command's time, if measured.
        plots: False writes the tables alone.
        env: the environment record (default ``environment()``).

    Returns:
        The files written, relative to ``out``.
    """
    from . import plots as plotting

    metric = target_metric(result, metric)
    out = os.fspath(out)
    names = swept(result)
    scores = importance(result, metric)
    leader = next(iter(scores), None)
    document = _Document(title or f"Sweep report: {len(result)} configs, {result.epochs} epochs")
    written: list[str] = []

    def figure(name: str, caption: str, draw) -> None:
        relative = f"plots/{name}.png"
        path = os.path.join(out, relative)
        draw(path)
        with open(path, "rb") as f:
            document.figure(relative, f.read(), caption)
        written.append(relative)

    statuses = np.asarray(result.status)
    counts = {s: int(np.sum(statuses == s)) for s in ("running", "diverged", "stopped")}
    best = best_configs(result, metric, 10)
    seeds = len({c.get("seed") for c in result.configs})
    method = space_method or ("grid" if names and _is_grid(result, names) else "random")
    summary = (
        f"{len(result)} configs ({method} space over {', '.join(names) or 'one config'}"
        f"{f', {seeds} seeds' if seeds > 1 else ''}), {result.epochs} epochs, strategy "
        f"{result.strategy}. {counts['running']} trained to the end, {counts['diverged']} "
        f"diverged, {counts['stopped']} stopped early. Target: final {metric} "
        f"({'lower' if _lower_is_better(metric) else 'higher'} is better)."
    )
    document.paragraph(summary)
    if best:
        winner = best[0]
        described = ", ".join(f"{k} {_cell(winner[k])}" for k in names if k in winner)
        document.paragraph(
            f"Best: {described or 'the only config'} with mean final {metric} "
            f"{_cell(winner[f'mean_final_{metric}'])}"
            + (f" over {winner['seeds']} seeds." if winner.get("seeds", 1) > 1 else ".")
        )
    document.heading("Best configs" + (" (mean over seeds)" if seeds > 1 else ""))
    document.table(best)
    if counts["stopped"]:
        document.paragraph(
            "A config stopped early counts with its last value before the stop; rows with "
            "one rank after every row that trained to the end."
        )
    if scores:
        document.heading("What mattered")
        document.paragraph(
            "η²: the share of the variance of the configs' ranks (by final "
            f"{metric}, diverged last) explained by each hyperparameter alone."
        )
        document.table([{"hyperparameter": k, "eta_squared": v} for k, v in scores.items()])

    if plots:
        final = plotting.final_values(result, metric)
        usable = ~np.asarray(result.diverged, bool) & np.isfinite(final)
        order = np.argsort(_ranks(result, metric))
        chosen = [int(i) for i in order[:top] if usable[i]]
        metrics = [m for m in dict.fromkeys([metric, "train_loss"]) if m in result.history]
        colour = leader or "learning_rate"
        document.heading("Loss curves")
        figure(
            "loss_curves",
            f"The best {len(chosen)} configs by final {metric}, coloured by {colour}.",
            lambda path: plotting.loss_curves(
                result,
                path,
                metrics=metrics,
                panel=None,
                color=colour,
                style=None,
                configs=chosen,
                title=f"Loss curves of the best {len(chosen)} configs",
            ),
        )
        if names:
            document.heading("Final metric against each hyperparameter")
            figure(
                "metric_vs_hyperparameters",
                f"Final {metric} of every config against each hyperparameter, the others "
                "marginalised (line: median, dashed: best).",
                lambda path: plotting.metric_vs_hyperparameters(
                    result, path, metric=metric, names=list(scores)
                ),
            )
        axes = [n for n in names if n != "batch_size"]
        if method == "grid" and len(axes) == 2:
            x, y = sorted(axes, key=lambda n: -scores.get(n, 0.0))
            document.heading("Heatmap per batch size")
            figure(
                "heatmap",
                f"Final {metric} over {x} x {y}, mean over seeds, one panel per batch size.",
                lambda path: plotting.final_loss_heatmap(result, path, metric=metric, x=x, y=y),
            )
        if method != "grid" and names:
            document.heading("Parallel coordinates")
            figure(
                "parallel_coordinates",
                f"Every config as a line through its hyperparameters to its final {metric}; "
                f"the best {top} coloured.",
                lambda path: plotting.parallel_coordinates(
                    result, path, metric=metric, names=list(scores), top=top
                ),
            )
        document.heading("Best curve per batch size")
        figure(
            "best_per_batch_size",
            f"For each batch size, the config with the best final {metric}: against epochs "
            "(equal examples seen) and against updates.",
            lambda path: plotting.best_curves_by_batch_size(result, path, metric=metric),
        )

    document.heading("Divergence and early stopping")
    document.paragraph(
        f"{counts['running']} trained to the end, {counts['diverged']} diverged (a "
        f"non-finite loss or update; frozen from then on), {counts['stopped']} stopped "
        "early by a callback."
    )
    stopped = np.asarray(result.stopped_epoch)[statuses == "stopped"]
    if stopped.size:
        epochs, number = np.unique(stopped, return_counts=True)
        document.table(
            [{"stopped after epoch": int(e), "configs": int(n)} for e, n in zip(epochs, number)]
        )
    document.table(_status_rows(result, names))

    document.heading("Time")
    timing = (
        f"Compiling: {result.total_compile_seconds:.2f} s over {len(result.groups)} "
        f"program(s); training: {result.total_seconds:.2f} s"
    )
    if wall_seconds is not None:
        timing += f"; the whole command: {wall_seconds:.1f} s"
    document.paragraph(timing + ".")
    document.table(
        [
            {
                "program": g["program"],
                "configs": len(g["configs"]),
                "slots": g["slots"],
                "compile_seconds": g["compile_seconds"],
                "seconds": g["seconds"],
            }
            for g in result.groups[:30]
        ]
    )
    document.heading("Environment")
    document.table([{"item": k, "value": v} for k, v in (env or environment()).items()])

    atomic_write(os.path.join(out, "report.md"), document.markdown())
    atomic_write(os.path.join(out, "report.html"), document.html())
    return written + ["report.html", "report.md"]
