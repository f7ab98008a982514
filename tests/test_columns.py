"""Configs as columns (``jaxgd.columns``, ``jaxgd.Space``) behave as the lists of dicts
they stand for: the same rows, order, slices and groups, checked against plain Python."""

import collections
import itertools

import numpy as np
import pytest

import jaxgd
from jaxgd.columns import ConfigRows, factorize, group_members, most_repeated, value_counts

RNG = np.random.default_rng(0)


def reference_factorize(values):
    uniques, codes = [], []
    for value in values:
        if value not in uniques:
            uniques.append(value)
        codes.append(uniques.index(value))
    return uniques, codes


@pytest.mark.parametrize(
    "values",
    [
        RNG.integers(0, 5, 200),  # small range: radix codes
        RNG.integers(-3, 3, 100),  # small range below zero
        RNG.integers(-(10**9), 10**9, 50).repeat(3),  # wide range: np.unique
        RNG.choice([0.1, 0.01, 1e-3, np.inf], 100),
        np.array(["sgd", "adam", "sgd", "rmsprop", "adam"], dtype=object),
        np.array([[1, 2], "a", [1, 2], 3, "a"], dtype=object),  # unhashable values too
        np.full(7, 4),
        np.zeros(0, np.int64),
    ],
    ids=[
        "small-ints",
        "negative-ints",
        "wide-ints",
        "floats",
        "strings",
        "unhashable",
        "one-value",
        "empty",
    ],
)
def test_factorize_is_first_appearance_order(values):
    uniques, codes = factorize(values)
    expected_uniques, expected_codes = reference_factorize(values.tolist())
    assert list(uniques) == expected_uniques
    assert codes.tolist() == expected_codes
    if len(values):
        members = group_members(codes, len(uniques))
        for code, indices in enumerate(members):
            assert indices.tolist() == [i for i, c in enumerate(expected_codes) if c == code]
        counts = collections.Counter(values.tolist() if values.dtype != object else expected_codes)
        assert most_repeated(values) == max(counts.values())
        assert sorted(value_counts(values).tolist()) == sorted(counts.values())


def test_group_members_with_many_codes():
    codes = RNG.integers(0, 300, 2000)  # more codes than uint8 holds
    members = group_members(codes, 300)
    assert np.array_equal(np.sort(np.concatenate(members)), np.arange(2000))
    for code in (0, 255, 299):
        assert members[code].tolist() == np.flatnonzero(codes == code).tolist()


def test_grid_is_itertools_product_with_the_last_axis_fastest():
    axes = dict(learning_rate=[0.1, 0.01, 0.001], momentum=[0.0, 0.9], optimizer="sgd", seed=[0, 1])
    space = jaxgd.grid(**axes)
    lists = [v if isinstance(v, list) else [v] for v in axes.values()]
    expected = [dict(zip(axes, values)) for values in itertools.product(*lists)]
    assert list(space) == expected
    assert [type(v) for v in space[5].values()] == [float, float, str, int]  # Python values


def test_space_slices_take_and_add_are_those_of_the_list():
    space = jaxgd.grid(learning_rate=[0.1, 0.01, 0.001], seed=[0, 1, 2])
    rows = list(space)
    assert isinstance(space[2:7:2], jaxgd.Space)
    assert list(space[2:7:2]) == rows[2:7:2]
    assert list(space[::-1]) == rows[::-1]
    assert list(space.take([8, 0, 4, 0])) == [rows[8], rows[0], rows[4], rows[0]]
    extra = [{"learning_rate": 0.5, "optimizer": "adam"}, {"learning_rate": 0.2}]
    mixed = space + extra  # configs with other keys: more blocks, same rows
    assert list(mixed) == rows + extra
    assert list(mixed.take([9, 0, 10])) == [extra[0], rows[0], extra[1]]
    assert list(mixed[7:11]) == (rows + extra)[7:11]
    assert mixed == jaxgd.Space(rows + extra)


def test_config_rows_from_dicts_round_trip_and_cache():
    configs = [{"a": 1, "b": 0.5}, {"a": 2, "b": 0.25}, {"c": "x"}, {"a": 3, "b": 1.0}]
    rows = ConfigRows.from_dicts(configs)
    assert len(rows) == 4 and list(rows) == configs and rows == configs
    assert len(rows.blocks) == 3  # one per run of the same keys
    assert list(rows.take([3, 2])) == [configs[3], configs[2]]
    assert list([{"z": 0}] + rows) == [{"z": 0}] + configs
    cached = rows.with_cache()
    cached[0]["note"] = "kept"  # a cached row is the same dict each time, as in a list
    assert cached[0]["note"] == "kept" and "note" not in rows[0]
    with pytest.raises(ValueError, match="columns of different lengths"):
        ConfigRows.from_columns({"a": [1, 2], "b": [1]})


def test_a_vectorised_refusal_names_the_first_bad_config():
    problem = jaxgd.problems.mlp((4, 3))
    data = {"x": np.zeros((20, 4), np.float32), "y": np.zeros(20, np.int32)}
    learning_rates = np.full(1000, 0.1)
    learning_rates[[637, 901]] = -1.0  # two bad ones: the first is named
    space = jaxgd.grid(learning_rate=learning_rates.tolist())
    with pytest.raises(jaxgd.InputError, match=r"config 637: learning_rate=-1.0"):
        jaxgd.sweep(problem, data, space=space, epochs=1, batch_size=4)
