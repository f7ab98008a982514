"""Data files (jaxgd.datafiles): small files of each format written here, read back
exactly; memory mapping where the format allows it; bad files refused by name."""

import gzip

import numpy as np
import pytest

import jaxgd
from jaxgd import datafiles

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
LABELS = RNG.integers(0, 10, size=7).astype(np.uint8)


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    """The IDX format: 0, 0, type code, ndim, big-endian uint32 sizes, big-endian data."""
    codes = {np.uint8: 0x08, np.int16: 0x0B, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    content = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(content) if compress else content)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_images_and_labels(tmp_path, compress):
    suffix = ".gz" if compress else ""
    images = tmp_path / f"train-images-idx3-ubyte{suffix}"
    labels = tmp_path / f"train-labels-idx1-ubyte{suffix}"
    write_idx(images, IMAGES, compress)
    write_idx(labels, LABELS, compress)
    np.testing.assert_array_equal(datafiles.load_idx(images), IMAGES)
    data = datafiles.load_dataset(inputs=images, targets=labels, num_classes=10)
    assert data["x"].shape == (7, 12) and data["x"].dtype == np.float32
    np.testing.assert_allclose(data["x"], IMAGES.reshape(7, 12) / 255, rtol=1e-6)
    np.testing.assert_array_equal(data["y"], LABELS)
    assert data["y"].dtype == np.int32
    unflattened = datafiles.load_dataset(inputs=images, targets=labels, flatten=False, scale=1.0)
    np.testing.assert_array_equal(unflattened["x"], IMAGES.astype(np.float32))


def test_idx_other_types_and_damage(tmp_path):
    values = RNG.normal(size=(3, 2)).astype(np.float32)
    write_idx(tmp_path / "v.idx2", values, compress=False)
    np.testing.assert_array_equal(datafiles.load_idx(tmp_path / "v.idx2"), values)
    content = (tmp_path / "v.idx2").read_bytes()
    (tmp_path / "cut-idx2-ubyte").write_bytes(content[:-4])
    with pytest.raises(jaxgd.InputError, match=r"header says shape \(3, 2\).*truncated"):
        datafiles.load_idx(tmp_path / "cut-idx2-ubyte")
    (tmp_path / "text-idx1-ubyte").write_bytes(b"hello world")
    with pytest.raises(jaxgd.InputError, match="not an IDX file"):
        datafiles.load_idx(tmp_path / "text-idx1-ubyte")


def test_npy_files_are_memory_mapped(tmp_path):
    x = RNG.normal(size=(9, 3)).astype(np.float32)
    y = np.arange(9) % 2
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert isinstance(datafiles.load_npy(tmp_path / "x.npy"), np.memmap)
    data = datafiles.load_dataset(inputs=tmp_path / "x.npy", targets=tmp_path / "y.npy")
    np.testing.assert_array_equal(data["x"], x)
    np.testing.assert_array_equal(data["y"], y)


def test_npz_stored_members_are_memory_mapped_compressed_ones_read(tmp_path):
    x = RNG.normal(size=(6, 2, 2))  # float64, 3 axes, Fortran order below
    y = np.arange(6).reshape(6, 1)
    np.savez(tmp_path / "stored.npz", x=np.asfortranarray(x), y=y)
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    stored = datafiles.load_npz(tmp_path / "stored.npz")
    packed = datafiles.load_npz(tmp_path / "packed.npz")
    assert isinstance(stored["x"], np.memmap) and not isinstance(packed["x"], np.memmap)
    for arrays in (stored, packed):
        np.testing.assert_array_equal(arrays["x"], x)
        np.testing.assert_array_equal(arrays["y"], y)
    data = datafiles.load_dataset(tmp_path / "stored.npz", inputs="x", targets="y")
    assert data["x"].shape == (6, 4) and data["y"].shape == (6,)  # [N, 1] targets become [N]
    with pytest.raises(jaxgd.InputError, match=r"has no array 'labels'; it has \['x', 'y'\]"):
        datafiles.load_dataset(tmp_path / "stored.npz", inputs="x", targets="labels")


def test_csv_columns_and_string_classes(tmp_path):
    (tmp_path / "iris.csv").write_text(
        "a,b,kind,note\n1.0,2.0,setosa,x\n3.0,4.0,virginica,y\n5.0,6.5,setosa,z\n"
    )
    data = datafiles.load_dataset(
        tmp_path / "iris.csv", inputs=["a", "b"], targets="kind", num_classes=2
    )
    np.testing.assert_array_equal(data["x"], [[1, 2], [3, 4], [5, 6.5]])
    np.testing.assert_array_equal(data["y"], [0, 1, 0])  # sorted names: setosa 0, virginica 1
    with pytest.raises(jaxgd.InputError, match=r"columns \['note'\] .* are not numeric"):
        datafiles.load_dataset(tmp_path / "iris.csv", targets="kind")
    regression = datafiles.load_dataset(tmp_path / "iris.csv", inputs="a", targets="b")
    np.testing.assert_array_equal(regression["y"], [2.0, 4.0, 6.5])
    with pytest.raises(jaxgd.InputError, match="data.targets='kinds'"):
        datafiles.load_dataset(tmp_path / "iris.csv", targets="kinds")


def test_refusals(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 5]))
    np.save(tmp_path / "short.npy", np.array([0, 1]))
    (tmp_path / "data.bin").write_bytes(b"0")
    cases = [
        (lambda: datafiles.load_npy(tmp_path / "nope.npy"), "does not exist"),
        (lambda: datafiles.load_npy(tmp_path), "is a folder"),
        (lambda: datafiles.file_format(tmp_path / "data.bin"), "cannot tell its format"),
        (
            lambda: datafiles.load_dataset(
                inputs=tmp_path / "x.npy", targets=tmp_path / "y.npy", num_classes=3
            ),
            r"label 5 of example 3 is outside 0..2",
        ),
        (
            lambda: datafiles.load_dataset(
                inputs=tmp_path / "x.npy", targets=tmp_path / "short.npy"
            ),
            "the inputs hold 4 examples and the targets 2",
        ),
        (
            lambda: datafiles.load_dataset(tmp_path / "x.npy", inputs="x", targets="y"),
            "single npy array",
        ),
        (lambda: datafiles.load_npz(tmp_path / "x.npy"), "not a NumPy .npz archive"),
    ]
    for call, message in cases:
        with pytest.raises(jaxgd.InputError, match=message):
            call()


def test_a_sweep_trains_on_loaded_files(tmp_path):
    """Blobs written to an .npz train an MLP through the loader: labels usable as is."""
    data = jaxgd.problems.synthetic_classification(256, num_features=8, num_classes=3)
    np.savez(tmp_path / "blobs.npz", **data)
    loaded = datafiles.load_dataset(tmp_path / "blobs.npz", inputs="x", targets="y", num_classes=3)
    result = jaxgd.sweep(
        jaxgd.problems.mlp((8, 16, 3)),
        loaded,
        space=jaxgd.grid(learning_rate=[0.1]),
        batch_size=32,
        epochs=3,
    )
    assert result.history["val_accuracy"][0, -1] > 0.6
