"""Placing workers on GPUs: the placement, the driver's line, and what a worker does with its
device. CUDA is faked (torch.cuda's counts and set_device) except in the test marked `cuda`."""

from concurrent.futures import Future
from multiprocessing import get_context
from types import SimpleNamespace

import pytest
import torch

from tasks_for_tests import FileTask, PlacedTask
from ticketlab.engine import executors, run_tasks, worker
from ticketlab.engine.devices import cuda_placement, place_workers, placement_line, ray_gpu_share
from ticketlab.errors import TicketlabError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch sees 2 GPUs; set_device records its argument instead of touching CUDA."""
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: current.append(str(device)))
    monkeypatch.setattr(worker, "_PLACED", None)
    return current


def test_cuda_places_workers_round_robin_and_cuda_k_pins_them():
    assert cuda_placement("cuda", 4, 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert cuda_placement("cuda", 3, 4) == ["cuda:0", "cuda:1", "cuda:2"]
    assert cuda_placement("cuda:1", 3, 2) == ["cuda:1"] * 3
    assert cuda_placement("cpu", 3, 2) == cuda_placement("mps", 3, 0) == cuda_placement(None, 3, 2) == []
    with pytest.raises(TicketlabError, match="no CUDA GPU"):
        cuda_placement("cuda", 2, 0)
    with pytest.raises(TicketlabError, match="only 2 CUDA device"):
        cuda_placement("cuda:2", 2, 2)


def test_auto_means_cuda_only_where_torch_sees_a_gpu(monkeypatch, two_fake_gpus):
    assert place_workers("auto", 3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert place_workers("cpu", 3) == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert place_workers("auto", 3) == []
    with pytest.raises(TicketlabError, match="sees no CUDA GPU"):
        place_workers("cuda", 3)


def test_the_line_names_every_worker_and_says_when_they_share_a_gpu():
    assert placement_line(["cuda:0", "cuda:1"]) == "workers on cuda:0, cuda:1"
    assert placement_line(["cuda:0", "cuda:1", "cuda:0"]) == (
        "workers on cuda:0, cuda:1, cuda:0 (3 workers share 2 GPUs: they split its memory and time)")
    assert "(2 workers share 1 GPU:" in placement_line(["cuda:1", "cuda:1"])


def test_ray_tasks_request_a_gpu_or_a_share_that_lets_all_jobs_run_at_once():
    assert ray_gpu_share(2, 4) == 1.0
    assert ray_gpu_share(4, 2) == 0.5
    assert ray_gpu_share(3, 2) == 0.5  # 2/3 each would fit only one task per GPU
    assert ray_gpu_share(3, 1) == 0.3333  # Ray's precision is 0.0001; 3 x 0.3333 fits one GPU
    with pytest.raises(TicketlabError, match="no GPU"):
        ray_gpu_share(2, 0)


def test_each_worker_takes_the_next_device_and_makes_it_current(two_fake_gpus):
    started = get_context("spawn").Value("i", 0)
    for _ in range(3):
        worker.init_worker(None, ["cuda:0", "cuda:1"], started)
    assert two_fake_gpus == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker.placed_device() == "cuda:0"


class InProcessPool:
    """Stands in for ProcessPoolExecutor: starts its workers by calling the initializer here
    (without the driver's pid, whose death check would end this process) and runs each task
    at once."""

    def __init__(self, jobs, mp_context, initializer, initargs):
        for _ in range(jobs):
            initializer(None, *initargs[1:])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, function, *args):
        future = Future()
        future.set_result(function(*args))
        return future


def test_the_driver_prints_the_placement_and_its_workers_receive_it(tmp_path, monkeypatch, capsys, two_fake_gpus):
    monkeypatch.setattr(executors, "ProcessPoolExecutor", InProcessPool)
    tasks = [FileTask(tmp_path, name, 1) for name in "abc"]
    assert run_tasks(tasks, jobs=3, device="cuda") == 3
    assert "workers on cuda:0, cuda:1, cuda:0 (3 workers share 2 GPUs" in capsys.readouterr().out
    assert two_fake_gpus == ["cuda:0", "cuda:1", "cuda:0"]
    assert run_tasks([FileTask(tmp_path, "d", 1)], jobs=2, device="cpu") == 1
    assert "workers on" not in capsys.readouterr().out  # nothing to place off CUDA


def test_spawned_workers_each_receive_their_own_device(tmp_path, monkeypatch):
    """Real worker processes: the placement and the shared count travel through spawn; the
    names are not CUDA ones, so the workers need no GPU (they only record them)."""
    monkeypatch.setattr(executors, "place_workers", lambda device, jobs: ["fake:0", "fake:1"])
    results = {}
    tasks = [PlacedTask(tmp_path, "a", partner="b"), PlacedTask(tmp_path, "b", partner="a")]
    assert run_tasks(tasks, jobs=2, device="cuda", on_done=lambda task, got: results.update({task.key: got})) == 2
    assert sorted(placed for placed, _ in results.values()) == ["fake:0", "fake:1"]


def test_ray_tasks_ask_for_gpus_only_on_cuda_and_say_how_many(capsys):
    cluster = SimpleNamespace(cluster_resources=lambda: {"CPU": 16.0, "GPU": 2.0})
    assert executors.ray_gpus(cluster, "cpu", 3) == executors.ray_gpus(cluster, None, 3) == 0.0
    assert capsys.readouterr().out == ""
    assert executors.ray_gpus(cluster, "cuda", 3) == 0.5
    assert "ray: each task requests 0.5 GPU (3 jobs, 2 GPUs in the cluster)" in capsys.readouterr().out


def test_ray_refuses_an_explicit_gpu_index(tmp_path):
    with pytest.raises(TicketlabError, match="Ray chooses each task's GPU; use --device cuda"):
        run_tasks([FileTask(tmp_path, "a", 1)], executor="ray", jobs=2, device="cuda:1")


@cuda
def test_workers_train_on_their_gpu(tmp_path):
    tasks = [PlacedTask(tmp_path, "a", partner="b"), PlacedTask(tmp_path, "b", partner="a")]
    results = {}
    run_tasks(tasks, jobs=2, device="cuda", on_done=lambda task, got: results.update({task.key: got}))
    count = torch.cuda.device_count()
    expected = sorted(f"cuda:{i % count}" for i in range(2))
    assert sorted(placed for placed, _ in results.values()) == expected
    assert sorted(current for _, current in results.values()) == expected  # torch's current device is it
