"""Fit and predict on a dask.distributed LocalCluster (``--scheduler``): the maps of one process,
a worker killed mid-run, a job stopped from the client, a scheduler that cannot be reached."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

from _model_data import ENERGY, make_set, nexus_cube, tiny_trained  # noqa: E402

from napari_xrf_pigments import cluster  # noqa: E402
from napari_xrf_pigments.errors import ClusterError  # noqa: E402
from napari_xrf_pigments.io import open_cube, write_cube  # noqa: E402
from napari_xrf_pigments.io.maps import read_maps  # noqa: E402
from napari_xrf_pigments.progress import run  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def pool():
    """Two single-threaded worker processes, shared by the tests of this module."""
    with cluster.connect("local:2") as client:
        yield cluster.ClusterPool(client)


@pytest.fixture(scope="module")
def fit_cube_file(tmp_path_factory):
    """The fit tests' synthetic cube (Ca only in a band: the refit of negative areas runs)."""
    from test_fitting import synthetic_cube

    path = tmp_path_factory.mktemp("fit") / "cube.h5"
    write_cube(path, synthetic_cube(rows=24, cols=20)[0])
    return path


@pytest.fixture(scope="module")
def tiny_cube_file(tmp_path_factory):
    """A cube of the tiny model's spectra, 30 x 40 (3 blocks of the predictor's 4096 spectra...
    here 1200 spectra: blocks are made small by rows_per_block where a test needs several)."""
    spectra, _, _ = make_set(1200, seed=3)
    return nexus_cube(tmp_path_factory.mktemp("tiny") / "tiny.h5", spectra.reshape(30, 40, -1).astype(np.uint32),
                      ENERGY)


def _same_maps(a_path, b_path, *, atol=0.0):
    a, a_root = read_maps(a_path)
    b, b_root = read_maps(b_path)
    assert list(a) == list(b)
    for name, (values, attrs) in a.items():
        assert attrs == b[name][1], name
        np.testing.assert_allclose(b[name][0], values, rtol=0, atol=atol, err_msg=name)
    changing = {"created", "elapsed_s", "workers"}
    assert {k: v for k, v in a_root.items() if k not in changing and not isinstance(v, np.ndarray)} == \
        {k: v for k, v in b_root.items() if k not in changing and not isinstance(v, np.ndarray)}


@pytest.mark.parametrize("weight", [0, 1])
@pytest.mark.slow  # a local dask cluster
def test_fit_on_a_local_cluster_equals_one_process(pool, fit_cube_file, tmp_path, weight):
    from napari_xrf_pigments.fitting import fit_to_file_job

    cube = open_cube(fit_cube_file)
    here = run(fit_to_file_job(cube, tmp_path / "here.h5", elements="Ca,Fe,Pb,Hg", weight=weight,
                               workers=0))
    there = run(cluster.fit_to_file_on(pool, cube, tmp_path / "there.h5", elements="Ca,Fe,Pb,Hg",
                                       weight=weight, rows_per_chunk=3))
    assert here.groups == there.groups
    _same_maps(tmp_path / "here.h5", tmp_path / "there.h5")  # element maps exactly


@pytest.mark.slow  # > 20 s: TensorFlow starts in each worker process
def test_predict_on_a_local_cluster_equals_one_process_cli(pool, tiny_cube_file, tmp_path, capsys):
    """The command end to end: same maps file, layout and attributes (tiny model: no evidence)."""
    from napari_xrf_pigments.cli import main

    _, model = tiny_trained()
    args = ["predict", str(tiny_cube_file), "--model", str(model)]
    assert main(args + ["--out", str(tmp_path / "here.h5")]) == 0
    address = pool.client.scheduler.address
    assert main(args + ["--out-dir", str(tmp_path / "there"), "--scheduler", address]) == 0
    err = capsys.readouterr().err
    assert f"dask scheduler {address}: 2 workers" in err
    _same_maps(tmp_path / "here.h5", tmp_path / "there" / "tiny.h5")


@pytest.fixture(scope="module")
def mockup_file(tmp_path_factory):
    from napari_xrf_pigments.datasets.mockup import FIG7_BOTTOMS, FIG7_TOPS, crossed_strips, simulate_mockup

    layout = crossed_strips(FIG7_TOPS[:2], FIG7_BOTTOMS[:2], strip_px=4, gap_px=2, margin_px=2)
    cube, _ = run(simulate_mockup(layout, seed=1))
    path = tmp_path_factory.mktemp("mockup") / "mockup.h5"
    write_cube(path, cube)
    return path


def _recorded(keys, future):
    keys.append(future.key)
    return future


@pytest.mark.slow  # a local dask cluster, TensorFlow in each worker
def test_predict_with_evidence_on_a_local_cluster_equals_one_process(pool, mockup_file, tmp_path,
                                                                     monkeypatch):
    """The shipped model: element evidence, tube guess, unexplained maps, block by block."""
    import gc

    from napari_xrf_pigments.model.files import load_model

    model = load_model(None)
    cube = open_cube(mockup_file)
    here = run(model.predictor().predict_cube(cube, rows_per_block=4))  # 4 blocks
    assert here.evidence == "checked"
    keys = []
    task = pool.task
    monkeypatch.setattr(pool, "task", lambda *a, **k: _recorded(keys, task(*a, **k)))
    out = run(cluster.predict_to_file_on(pool, cube, tmp_path / "there.h5", model, rows_per_block=4))
    gc.collect()
    # Once the file is written, nothing here holds its tasks: their results leave the workers.
    assert len(keys) == 5 and not set(keys) & set(pool.client.futures)
    there, root = read_maps(out)
    mine = here.to_maps()
    assert list(there) == list(mine)
    assert root["evidence"] == "checked"
    for name, (values, _) in mine.items():
        # Exactly: a LocalCluster's workers keep this process's BLAS threads (the evidence
        # fit's solve rounds by them), so checked and unexplained maps are equal to the bit.
        np.testing.assert_array_equal(there[name][0], values, err_msg=name)
    raw, _ = read_maps(out, group="raw")
    for i, label in enumerate(model.pigments):  # the network's own output: exactly
        np.testing.assert_array_equal(raw[label.abbreviation][0], here.raw["present"][..., i])


@pytest.mark.slow  # a local dask cluster, TensorFlow in each worker
def test_a_campaign_queues_the_next_cubes_tasks_and_its_run_takes_them_up(pool, mockup_file,
                                                                         tmp_path, monkeypatch):
    from napari_xrf_pigments.model.files import load_model

    model = load_model(None)
    cube = open_cube(mockup_file)
    mine = run(model.predictor().predict_cube(cube, rows_per_block=4)).to_maps()
    # The same file twice stands for two cubes of a campaign.
    first = run(cluster.predict_to_file_on(pool, cube, tmp_path / "a.h5", model, rows_per_block=4,
                                           next_cube=mockup_file))
    (queued,) = pool._queued.values()  # its start and blocks, behind the first run's blocks
    assert queued.start is not None and sorted(s.start for s in queued.blocks.values()) == [0, 4, 8, 12]
    submitted = []
    task = pool.task
    monkeypatch.setattr(pool, "task", lambda *a, **k: submitted.append(a) or task(*a, **k))
    second = run(cluster.predict_to_file_on(pool, cube, tmp_path / "b.h5", model, rows_per_block=4))
    assert not pool._queued and not submitted  # taken up: no task of its own
    monkeypatch.undo()
    for out in (first, second):
        there, _ = read_maps(out)
        for name, (values, _) in mine.items():
            np.testing.assert_array_equal(there[name][0], values, err_msg=name)
    # A next cube that cannot be opened is left to its own run to report.
    run(cluster.predict_to_file_on(pool, cube, tmp_path / "c.h5", model, rows_per_block=4,
                                   next_cube=tmp_path / "missing.h5"))
    assert not pool._queued
    # So is one without an energy calibration (its run refuses it): nothing runs for it.
    from napari_xrf_pigments.cube import XRFCube

    uncalibrated = write_cube(tmp_path / "uncalibrated.h5", XRFCube.from_array(np.ones((4, 4, 64))))
    assert not open_cube(uncalibrated).energy.calibrated
    run(cluster.predict_to_file_on(pool, cube, tmp_path / "c2.h5", model, rows_per_block=4,
                                   next_cube=uncalibrated))
    assert not pool._queued
    # A cube that fails cancels the pool's tasks, the queued ones among them: the next cube's
    # run must not take up cancelled tasks.
    run(cluster.predict_to_file_on(pool, cube, tmp_path / "d.h5", model, rows_per_block=4,
                                   next_cube=mockup_file))
    pool.cancel()
    assert not pool._queued
    there, _ = read_maps(run(cluster.predict_to_file_on(pool, cube, tmp_path / "e.h5", model,
                                                         rows_per_block=4)))
    for name, (values, _) in mine.items():
        np.testing.assert_array_equal(there[name][0], values, err_msg=name)


@pytest.mark.slow  # a local dask cluster
def test_local_workers_neither_spin_nor_probe_what_the_client_probed(pool, tiny_cube_file):
    """A LocalCluster's OpenBLAS threads sleep as soon as they wait (spinning, they took the cores
    from the other workers: +20 % on a 2-core prediction), and a worker opens a cube the client
    has probed without a probe child of its own."""
    from napari_xrf_pigments.io._isolated import probed_version

    assert set(pool.client.run(os.environ.get, "OPENBLAS_THREAD_TIMEOUT").values()) == {"4"}
    ref = cluster.CubeRef.of(open_cube(tiny_cube_file))
    assert ref.probed == probed_version(tiny_cube_file) and ref.probed is not None

    def open_without_children(ref):
        import subprocess

        from napari_xrf_pigments.io import _isolated

        def refuse(*args, **kwargs):
            raise AssertionError(f"a child process was started: {args}")

        spawn, probes = subprocess.run, dict(_isolated._probe_cache)
        subprocess.run, _isolated._probe_cache = refuse, {}
        try:
            cluster._CUBES.clear()
            return ref.open().shape
        finally:
            subprocess.run, _isolated._probe_cache = spawn, probes

    assert pool.client.submit(open_without_children, ref, pure=False).result() == ref.shape


def _busy_worker(client):
    """A worker running a task now (or any worker after 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items() if keys]
        if busy:
            return busy[0]
        time.sleep(0.05)
    return next(iter(client.scheduler_info()["workers"]))


@pytest.mark.slow  # > 20 s: the nanny restarts the killed worker
def test_a_worker_killed_mid_run_leaves_complete_identical_maps(pool, fit_cube_file, tmp_path):
    from napari_xrf_pigments.fitting import fit_to_file_job

    cube = open_cube(fit_cube_file)
    run(fit_to_file_job(cube, tmp_path / "here.h5", elements="Ca,Fe,Pb,Hg", workers=0))
    job = cluster.fit_to_file_on(pool, cube, tmp_path / "there.h5", elements="Ca,Fe,Pb,Hg",
                                 rows_per_chunk=1)
    next(job)  # the fit is set up and its chunks go out
    victim = _busy_worker(pool.client)
    pid = pool.client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    run(job)
    assert victim not in pool.client.scheduler_info()["workers"]
    _same_maps(tmp_path / "here.h5", tmp_path / "there.h5")
    pool.client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


@pytest.mark.slow  # > 20 s: the nanny restarts the killed worker, which loads TensorFlow again
def test_a_worker_killed_mid_prediction_leaves_complete_identical_maps(pool, mockup_file, tmp_path):
    """The blocks take their cube's evidence start from a task: one lost with its worker is run
    again, and so are the blocks."""
    from napari_xrf_pigments.model.files import load_model

    model = load_model(None)
    cube = open_cube(mockup_file)
    mine = run(model.predictor().predict_cube(cube, rows_per_block=2)).to_maps()
    job = cluster.predict_to_file_on(pool, cube, tmp_path / "there.h5", model, rows_per_block=2)
    next(job)
    next(job)  # the start and a first block are done
    victim = _busy_worker(pool.client)
    pid = pool.client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    there, root = read_maps(run(job))
    assert victim not in pool.client.scheduler_info()["workers"]
    assert root["evidence"] == "checked"
    for name, (values, _) in mine.items():
        np.testing.assert_array_equal(there[name][0], values, err_msg=name)
    pool.client.wait_for_workers(2, timeout=60)


@pytest.mark.slow  # > 20 s: the tiny model is trained first (once per session)
@pytest.mark.parametrize("how", ["interrupt", "close"])
def test_a_job_stopped_from_the_client_leaves_no_file(pool, tiny_cube_file, tmp_path, how):
    """Ctrl-C / SIGTERM (KeyboardInterrupt at the client's yield) or a closed job."""
    _, model = tiny_trained()
    out = tmp_path / "maps.h5"
    job = cluster.predict_to_file_on(pool, tiny_cube_file, out, str(model), rows_per_block=2)
    next(job)
    next(job)  # a block came back and was written to the temporary file
    if how == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            job.throw(KeyboardInterrupt)
    else:
        job.close()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file either
    # The cancelled blocks do not linger: the cluster is free for the next job.
    deadline = time.monotonic() + 30
    while any(pool.client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pool.client.processing().values())


@pytest.mark.slow  # waits out the 2 s connection timeout
def test_an_unreachable_scheduler_is_one_line_and_exit_code_2(tiny_cube_file, tmp_path, capsys, monkeypatch):
    from napari_xrf_pigments.cli import main

    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 2.0)
    started = time.monotonic()
    code = main(["predict", str(tiny_cube_file), "--out", str(tmp_path / "m.h5"),
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("xrf-pigments predict: error: cannot reach the dask scheduler at "
                             "tcp://127.0.0.1:9 (")
    assert not (tmp_path / "m.h5").exists()


def test_scheduler_names():
    assert cluster.parse_scheduler("local:3") == ("local", 3)
    assert cluster.parse_scheduler("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    assert cluster.parse_scheduler("node12:8786") == ("address", "node12:8786")
    assert cluster.parse_scheduler("~/scheduler.json") == ("file", "~/scheduler.json")
    with pytest.raises(Exception, match="local:N"):
        cluster.parse_scheduler("local:0")


def test_a_missing_scheduler_file_is_reported_after_the_timeout(tmp_path):
    with pytest.raises(ClusterError, match="no scheduler file .* appeared within 0.5 s"):
        with cluster.connect(str(tmp_path / "scheduler.json"), timeout_s=0.5):
            pass


@pytest.mark.slow  # a local dask cluster
def test_a_cube_in_memory_cannot_go_to_the_cluster(pool, tmp_path):
    from napari_xrf_pigments.cube import XRFCube

    cube = XRFCube.from_array(np.ones((4, 4, 300), np.uint16), zero=2.0, gain=0.04)
    with pytest.raises(Exception, match="not a file the cluster's workers can open"):
        cluster.fit_to_file_on(pool, cube, tmp_path / "m.h5", elements="Fe")


# -- simulate: the physics on the workers, every random draw in the client --------------------

#: A small recipe (distractors: in the command's test) with a measured background, in batches
#: small enough that several come back out of order.
SIMULATE = dict(seed=3, batch_size=4)


def _simulate_kwargs():
    from napari_xrf_pigments.datasets.training import TrainingRecipe
    from napari_xrf_pigments.physics import Instrument

    energy = Instrument().readout.energies()
    return dict(SIMULATE, recipe=TrainingRecipe(n_instruments=2, readouts_per_instrument=2),
                background_cps=0.5 + np.exp(-(((energy - 8.0) / 4.0) ** 2)))


def _same_set(a, b):
    for name in ("spectra", "energy", "present", "top", "detectable"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (x.dtype == y.dtype and np.array_equal(x, y)), name  # to the bit
    assert a.params.keys() == b.params.keys()
    for name, values in a.params.items():
        assert values.dtype == b.params[name].dtype and np.array_equal(values, b.params[name]), name
    assert a.provenance == b.provenance and a.pigments == b.pigments


@pytest.mark.slow  # a local dask cluster and three simulations
def test_simulate_on_a_local_cluster_equals_one_process_whatever_the_workers(pool):
    from napari_xrf_pigments.datasets.training import generate_training_set

    here = run(generate_training_set(16, **_simulate_kwargs()))
    assert here.detectable is not None and here.detectable.any()
    two = run(generate_training_set(16, **_simulate_kwargs(), pool=pool))
    _same_set(here, two)
    with cluster.connect("local:1") as client:
        one = run(generate_training_set(16, **_simulate_kwargs(), pool=cluster.ClusterPool(client)))
    _same_set(two, one)


class _BackwardsPool:
    """A pool whose tasks finish last first: the Poisson draws must still follow the batches."""

    def spread(self, fn, calls, *, weights=None, groups=None):
        values = [fn(*args) for args in calls]
        yield from reversed(list(enumerate(values)))


@pytest.mark.slow  # ~5 s of simulation
def test_simulated_counts_are_drawn_in_batch_order_whatever_order_the_batches_finish():
    from napari_xrf_pigments.datasets.training import generate_training_set

    kwargs = dict(_simulate_kwargs(), detectable=False)
    here = run(generate_training_set(16, **kwargs))
    _same_set(here, run(generate_training_set(16, **kwargs, pool=_BackwardsPool())))


@pytest.mark.slow  # ~20 s: the command's 36 instrument readouts, twice
def test_simulate_cli_on_a_cluster_writes_the_same_file(pool, tmp_path):
    import h5py

    from napari_xrf_pigments.cli import main
    from napari_xrf_pigments.datasets.trainset import read_training_set

    args = ["simulate", "--n", "8", "--seed", "5", "--distractors", "0.5"]
    assert main(args + ["--out", str(tmp_path / "here.h5")]) == 0
    assert main(args + ["--out", str(tmp_path / "there.h5"), "--scheduler", pool.client.scheduler.address]) == 0
    here, there = read_training_set(tmp_path / "here.h5"), read_training_set(tmp_path / "there.h5")
    here.provenance.pop("command"), there.provenance.pop("command")  # the command line (sys.argv)
    _same_set(here, there)
    with h5py.File(tmp_path / "here.h5") as a, h5py.File(tmp_path / "there.h5") as b:
        assert sorted(a) == sorted(b)


@pytest.mark.slow  # a local dask cluster
def test_a_simulation_stopped_from_the_client_leaves_no_file(pool, tmp_path, monkeypatch):
    """Ctrl-C during the command (as in the progress bar's callback): exit 130, no file, no task."""
    from napari_xrf_pigments import progress
    from napari_xrf_pigments.cli import main

    def interrupted_after_a_batch(job, desc="", disable=False):
        next(job)
        assert next(job).done > 0  # a batch came back, others are queued or running
        job.close()  # what progress.run does when Ctrl-C arrives in its callback
        raise KeyboardInterrupt

    monkeypatch.setattr(progress, "run_with_tqdm", interrupted_after_a_batch)
    out = tmp_path / "set.h5"
    assert main(["simulate", "--n", "60", "--out", str(out), "--scheduler", pool.client.scheduler.address]) == 130
    assert list(tmp_path.iterdir()) == []
    deadline = time.monotonic() + 30
    while any(pool.client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pool.client.processing().values())


@pytest.mark.slow  # waits out the 2 s connection timeout
def test_simulate_with_an_unreachable_scheduler_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    from napari_xrf_pigments.cli import main

    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 2.0)
    code = main(["simulate", "--n", "10", "--out", str(tmp_path / "s.h5"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("xrf-pigments simulate: error: cannot reach the dask scheduler at tcp://127.0.0.1:9 (")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a local dask cluster
def test_the_dashboard_line_says_how_to_get_one_without_bokeh(pool, monkeypatch):
    import importlib.util

    line = cluster.describe(pool.client)
    assert line.startswith(f"dask scheduler {pool.client.scheduler.address}: 2 workers, 2 threads; ")
    if importlib.util.find_spec("bokeh") is None:  # local:N: the scheduler runs in this process
        assert line.endswith("no dashboard (it needs bokeh where the scheduler runs: pip install 'bokeh>=3.1')")
    else:
        assert line.endswith(f"dashboard {pool.client.dashboard_link}")
    monkeypatch.setattr(cluster, "_serves_dashboard", lambda client: None)  # cannot tell: the link
    assert cluster.describe(pool.client).endswith(f"dashboard {pool.client.dashboard_link}")


def test_calls_of_one_group_go_to_one_worker_and_the_load_is_shared():
    weights = np.array([5, 5, 3, 3, 4, 4, 2], dtype=float)
    groups = [0, 0, 1, 1, 2, 2, 3]
    owner = cluster._owners(weights, groups, [1, 1])
    assert all(len({owner[i] for i in range(7) if groups[i] == g}) == 1 for g in set(groups))
    assert sorted(weights[owner == w].sum() for w in (0, 1)) == [12, 14]  # heaviest group first
    # Fewer groups than workers: runs of the calls in order, by weight per thread.
    assert cluster._owners(weights, groups, [1] * 5).tolist() == [0, 1, 2, 2, 3, 4, 4]
    assert cluster._owners(np.ones(6), None, [1, 3]).tolist() == [0, 1, 1, 1, 1, 1]


@pytest.mark.slow  # a local dask cluster
def test_a_fits_small_calls_go_as_one_task_per_worker(pool, fit_cube_file, tmp_path, monkeypatch):
    """The refit's and the statistics' calls (a few ms each) go in batches, one per worker that
    keeps their chunks; the maps stay those of one process (above)."""
    from napari_xrf_pigments.fitting import _worker

    submitted = []
    real_submit = cluster.ClusterPool.submit

    def submit(self, fn, *args, **kwargs):
        submitted.append((fn, args[0], len(args[1])) if fn is cluster._call_each else (fn, None, 1))
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(cluster.ClusterPool, "submit", submit)
    run(cluster.fit_to_file_on(pool, open_cube(fit_cube_file), tmp_path / "maps.h5",
                               elements="Ca,Fe,Pb,Hg", rows_per_chunk=3))
    assert {fn for fn, _, _ in submitted if fn is not cluster._call_each} == {_worker.fit_spectra}
    batches = [(of, n) for fn, of, n in submitted if fn is cluster._call_each]
    # This cube's Ca band makes negative areas elsewhere: the refit runs.
    assert {of for of, _ in batches} == {cluster._refit_keeping, cluster._statistics_keeping}
    assert len(batches) < sum(n for _, n in batches)  # several calls per task


def test_a_batchs_results_errors_and_cancel_reach_each_of_its_calls():
    from concurrent.futures import CancelledError, Future

    def batch_of():
        batch, calls = Future(), [Future() for _ in range(3)]
        batch.add_done_callback(lambda done: cluster._hand_out(calls, done))
        return batch, calls

    batch, calls = batch_of()
    batch.set_result(["a", "b", "c"])
    assert [c.result() for c in calls] == ["a", "b", "c"]
    batch, calls = batch_of()
    batch.set_exception(ValueError("a block could not be read"))
    for call in calls:
        with pytest.raises(ValueError, match="could not be read"):
            call.result()
    batch, calls = batch_of()
    assert batch.cancel()
    for call in calls:
        with pytest.raises(CancelledError):
            call.result()


@pytest.mark.slow  # TensorFlow starts in each worker process
def test_workers_preload_the_model_while_the_client_loads_it(pool, tmp_path):
    from napari_xrf_pigments.model import files

    path = str(files.default_model_path().resolve())
    pool.preload_model(None)
    assert path in pool._preloaded
    pool.preload_model(tmp_path / "not-a-model")  # left to the client's own loading to report
    assert len(pool._preloaded) == 1

    def loaded(path=path):
        from napari_xrf_pigments.model import files

        return any(key[0] == path for key in files._CACHE)

    deadline = time.monotonic() + 120
    while not all(pool.client.run(loaded).values()):
        assert time.monotonic() < deadline, "the workers did not load the model"
        time.sleep(0.5)
