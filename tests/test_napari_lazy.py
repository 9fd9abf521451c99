"""The (channels, rows, columns) view napari gets of a cube (no viewer needed)."""

import h5py
import numpy as np
import pytest

from napari_xrf_pigments._napari._lazy import EnergyFirstView, energy_first

KEYS = [
    0, -1, 3, slice(None), slice(2, 5), slice(None, None, 2), slice(None, None, -1),
    slice(8, 2, -2), slice(5, 5), ..., (..., 2), (1, ..., 3), (2, 3),
    (slice(1, 4), 2, slice(None)), (slice(None), slice(None), 1), [1, 3],
    (slice(None), [0, 2, 4]), (slice(None), np.array([True, False] * 3 + [True])),
]


@pytest.fixture
def stored(tmp_path):
    counts = np.random.default_rng(1).poisson(3, (7, 5, 11)).astype(np.uint16)
    with h5py.File(tmp_path / "c.h5", "w") as h5:
        h5["counts"] = counts
    with h5py.File(tmp_path / "c.h5", "r") as h5:
        yield counts, h5["counts"]


def test_view_matches_numpy_moveaxis(stored):
    counts, dataset = stored
    view = energy_first(dataset)
    assert isinstance(view, EnergyFirstView)
    expected = np.moveaxis(counts, 2, 0)
    assert (view.shape, view.dtype, view.ndim, view.size) == (
        expected.shape, expected.dtype, 3, expected.size,
    )
    for key in KEYS:
        np.testing.assert_array_equal(view[key], expected[key], err_msg=repr(key))
    np.testing.assert_array_equal(np.asarray(view), expected)
    with pytest.raises(IndexError):
        view[11]


def test_channels_are_read_in_cached_bands(stored):
    counts, dataset = stored
    reads = []

    class Spy:
        shape, dtype = dataset.shape, dataset.dtype

        def __getitem__(self, key):
            reads.append(key)
            return dataset[key]

    view = EnergyFirstView(Spy(), band_bytes=4 * 7 * 5 * 2)  # room for 4 channel images
    whole = (slice(0, 7, 1), slice(0, 5, 1))
    np.testing.assert_array_equal(view[5], counts[:, :, 5])
    assert reads == [(*whole, slice(3, 7))]  # centred on channel 5
    np.testing.assert_array_equal(view[6], counts[:, :, 6])
    np.testing.assert_array_equal(view[(3, ..., slice(0, 5))], counts[:, :, 3])
    assert len(reads) == 1  # same band: no new read
    np.testing.assert_array_equal(view[10], counts[:, :, 10])
    assert reads[-1] == (*whole, slice(7, 11))  # clipped at the last channel
    np.testing.assert_array_equal(view[4], counts[:, :, 4])  # the previous band is kept
    assert len(reads) == 2
    np.testing.assert_array_equal(view[0], counts[:, :, 0])
    assert reads[-1] == (*whole, slice(0, 4))
    # A region (what napari asks for when a big cube is zoomed in) reads only that region,
    # with a wider band since the region is smaller.
    np.testing.assert_array_equal(view[6, 2:4, 1:3], counts[2:4, 1:3, 6])
    assert reads[-1] == (slice(2, 4, 1), slice(1, 3, 1), slice(0, 11))
    np.testing.assert_array_equal(view[1:3, 0, 0], counts[0, 0, 1:3])  # ranges read directly
    assert reads[-1] == (0, 0, slice(1, 3, 1))


def test_numpy_and_dask_are_transposed_views():
    import dask.array as da

    counts = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.shares_memory(energy_first(counts), counts)
    lazy = energy_first(da.from_array(counts, chunks=(1, 3, 4)))
    np.testing.assert_array_equal(lazy.compute(), np.moveaxis(counts, 2, 0))
