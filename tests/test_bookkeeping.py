"""The host-side shortcuts a sweep of a million configs takes (issue 11 part 4) give what
the plain bookkeeping gives: deferred ``status`` and ``groups``, a loop without reports,
layouts whose slot positions are built only when asked for."""

import csv
import dataclasses
import io
import pickle

import numpy as np
import pytest

import jaxgd
from jaxgd.core.layout import SeedLayout
from jaxgd.persist import encode, encode_configs
from jaxgd.results import GroupRecords, StatusNames

problem, data = jaxgd.problems.linear_regression(num_examples=40)

# two batch sizes (two programs), and a learning rate that diverges
SPACE = jaxgd.grid(learning_rate=[0.1, 30.0], batch_size=[8, 5], seed=[0, 1])


class Noop(jaxgd.Callback):
    """A callback that reads every report: the loop builds them."""

    def on_chunk(self, report):
        assert len(report.status) == len(SPACE)


def run(epochs_per_chunk=3, **kwargs):
    options = jaxgd.SweepOptions(strategy="grouped", epochs_per_chunk=epochs_per_chunk)
    return jaxgd.sweep(
        problem, data, space=SPACE, epochs=3, validation=None, options=options, **kwargs
    )


@pytest.fixture(scope="module")
def results():
    return run(), run(epochs_per_chunk=1, callbacks=[Noop()])


def test_deferred_status_and_groups_read_as_plain_values(results):
    result, _ = results
    assert isinstance(result.__dict__["_groups"], GroupRecords)
    totals = result.total_compile_seconds, result.total_seconds
    assert isinstance(result.__dict__["_groups"], GroupRecords)  # totals built nothing
    status = result.status
    assert isinstance(status, np.ndarray) and status.dtype == np.dtype("<U8")
    assert status.tolist() == [("diverged" if d else "running") for d in result.diverged]
    assert 0 < result.diverged.sum() < len(SPACE)
    assert result.status is status  # built once
    groups = result.groups
    assert [type(g) for g in groups] == [dict, dict]
    assert [list(g) for g in groups] == [
        ["program", "configs", "slots", "compile_seconds", "seconds"]
    ] * 2
    sizes = [row["batch_size"] for row in result.configs]
    for group in groups:
        size = int(group["program"].rsplit("=", 1)[1])
        assert group["configs"] == [i for i, b in enumerate(sizes) if b == size]
        assert all(type(i) is int for i in group["configs"])
    assert [f.name for f in dataclasses.fields(result)].count("groups") == 1
    assert totals == (
        sum(g["compile_seconds"] for g in groups),
        sum(g["seconds"] for g in groups),
    )


def test_deferred_fields_survive_replace_pickle_and_save(results, tmp_path):
    result, _ = results
    fresh = run()
    deferred = fresh.__dict__["_status"], fresh.__dict__["_groups"]
    status, groups = (pickle.loads(pickle.dumps(d)).build() for d in deferred)
    assert status.tolist() == fresh.status.tolist() and groups == fresh.groups
    replaced = dataclasses.replace(result, strategy="grouped")
    assert replaced.groups == result.groups and replaced.status.tolist() == result.status.tolist()
    result.save(tmp_path / "run")
    loaded = jaxgd.SweepResult.load(tmp_path / "run")
    assert loaded.groups == result.groups
    np.testing.assert_array_equal(loaded.status, result.status)
    given = jaxgd.SweepResult(
        **{**_fields(result), "status": StatusNames(np.array([2, 0]), ("a", "b", "c"))}
    )
    assert given.status.tolist() == ["c", "a"]


def _fields(result):
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}


def test_a_sweep_without_reports_gives_what_reports_give(results):
    plain, reported = results
    assert list(plain.history) == list(reported.history)
    for name, values in plain.history.items():
        assert values.dtype == reported.history[name].dtype, name
        np.testing.assert_array_equal(values, reported.history[name])
    for name in (
        "updates",
        "examples_seen",
        "diverged",
        "diverged_step",
        "status",
        "stopped_epoch",
    ):
        ours, theirs = np.asarray(getattr(plain, name)), np.asarray(getattr(reported, name))
        assert ours.dtype == theirs.dtype, name
        np.testing.assert_array_equal(ours, theirs)
    assert [g["configs"] for g in plain.groups] == [g["configs"] for g in reported.groups]
    # one value for every config: read-only views, not a million copies
    assert not plain.history["examples_seen"].flags.writeable
    assert not plain.stopped_epoch.flags.writeable and not plain.examples_seen.flags.writeable
    for name in ("seconds", "compile_seconds"):
        assert getattr(plain, name).shape == (len(SPACE),)


@pytest.mark.parametrize(
    "seeds, width",
    [
        ([0, 0, 0, 1, 1, 1], None),  # in slot order: positions built when asked for
        ([3, 3, 5, 5, 5], None),  # sorted, uneven: padded
        ([1, 0, 1, 0, 2], 4),  # unsorted, wider than needed
    ],
)
def test_seed_layout_positions_are_those_of_a_loop(seeds, width):
    layout = SeedLayout(seeds, width)
    order = list(dict.fromkeys(seeds))
    rows = [order.index(s) for s in seeds]
    cols = [seeds[:i].count(s) for i, s in enumerate(seeds)]
    assert layout.rows.tolist() == rows and layout.cols.tolist() == cols
    assert layout.shape == layout.slots.shape == (len(order), width or max(map(seeds.count, order)))
    for k, (r, c) in enumerate(zip(rows, cols)):
        assert layout.slots[r, c] == k
    values = np.arange(len(seeds), dtype=np.float64)
    np.testing.assert_array_equal(layout.unpack(layout.to_slots(values)), values)


def test_rows_as_dicts_and_encoded_column_by_column_are_those_of_the_rows():
    space = jaxgd.grid(learning_rate=[0.1, float("inf")], momentum=0.9, seed=[0, 1]) + [
        {"optimizer": "adam", "batch_size": jaxgd.increase_batch_size(4, 2, at=[2]), "seed": 3},
        {"learning_rate": np.float32(0.5), "flag": True},
    ]
    rows = space.configs.take([5, 0, 4, 2, 1, 3])  # blocks interleaved
    assert rows.to_dicts() == [dict(row) for row in rows]
    cached = rows.with_cache()
    cached[1]["learning_rate"] = float("-inf")  # an edit to a row handed out stays
    cached[2]["extra"] = (1, 2)
    expected = [{k: encode(v) for k, v in row.items()} for row in cached]
    assert encode_configs(cached) == expected
    assert [[type(v) for v in row.values()] for row in cached.to_dicts()] == [
        [type(v) for v in row.values()] for row in cached
    ]


def test_table_built_by_columns_is_the_rows_one_by_one():
    space = jaxgd.grid(
        learning_rate=[0.1, 0.01, 30.0], batch_size=[8, jaxgd.increase_batch_size(4, 2, at=[2])]
    )
    result = jaxgd.sweep(
        problem,
        data,
        space=space,
        epochs=4,
        callbacks=[jaxgd.SuccessiveHalving(metric="val_loss", eta=2, min_epochs=2)],
    )
    assert {"running", "diverged", "stopped"} <= set(result.status.tolist())
    result.configs[0]["note"] = ("edited", 1)  # a row handed out, edited: shown as text
    expected = [result._row(i, config) for i, config in enumerate(result.configs)]
    table = result.table()
    np.testing.assert_equal(table, expected)  # (NaN == NaN here)
    assert [[type(v) for v in row.values()] for row in table] == [
        [type(v) for v in row.values()] for row in expected
    ]
    assert table[0]["note"] == "('edited', 1)"


@pytest.mark.parametrize("mixed", [False, True])
def test_csv_is_the_table_through_dict_writer(results, tmp_path, mixed):
    result = results[0]
    if mixed:  # rows with different keys: the columns of all, blanks where missing
        result = dataclasses.replace(
            result, configs=[{**c, "x": 1} if i % 2 else c for i, c in enumerate(result.configs)]
        )
    result.to_csv(tmp_path / "rows.csv")
    rows = result.table()
    lines = io.StringIO()
    writer = csv.DictWriter(lines, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    assert (tmp_path / "rows.csv").read_bytes() == lines.getvalue().encode()
