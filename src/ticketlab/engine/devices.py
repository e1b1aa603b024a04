"""Which GPU each worker trains on: with several, one worker per GPU in turn.

Only the plain name "cuda" (or "auto" where it means CUDA) is placed: worker i gets cuda:(i
mod N). An explicit "cuda:K" pins every worker to K; cpu and mps need no placement. torch is
imported only when the device may be CUDA, so CPU runs never pay for it here.
"""

from __future__ import annotations

import math

from ticketlab.errors import TicketlabError


def cuda_placement(device: str | None, jobs: int, cuda_count: int) -> list[str]:
    """The CUDA device of each of `jobs` workers for a run on `device` ("auto" already
    resolved) with `cuda_count` GPUs here; [] when `device` is not a CUDA one."""
    if device is None or not device.startswith("cuda"):
        return []
    if cuda_count < 1:
        raise TicketlabError(f"device {device!r}: this machine has no CUDA GPU")
    if device == "cuda":
        return [f"cuda:{i % cuda_count}" for i in range(jobs)]
    if int(device.removeprefix("cuda:")) >= cuda_count:
        raise TicketlabError(f"device {device!r}: only {cuda_count} CUDA device(s) here")
    return [device] * jobs


def place_workers(device: str | None, jobs: int) -> list[str]:
    """`cuda_placement` on this machine: "auto" means CUDA when torch sees a GPU."""
    if device is None or not (device == "auto" or device.startswith("cuda")):
        return []
    import torch

    if not torch.cuda.is_available():
        if device == "auto":
            return []
        raise TicketlabError(f"device {device!r}: this torch sees no CUDA GPU; use --device cpu or auto")
    return cuda_placement("cuda" if device == "auto" else device, jobs, torch.cuda.device_count())


def placement_line(devices: list[str]) -> str:
    """The driver's one line on where its workers train, saying so when GPUs are shared."""
    line = "workers on " + ", ".join(devices)
    gpus = len(set(devices))
    if len(devices) > gpus:
        line += (f" ({len(devices)} workers share {gpus} GPU{'s' if gpus > 1 else ''}: "
                 "they split its memory and time)")
    return line


def ray_gpu_share(jobs: int, gpus: float) -> float:
    """The GPUs each Ray task requests so that `jobs` of them run at once on `gpus` GPUs: 1
    while there are GPUs enough, else 1/k with k = ceil(jobs/gpus) tasks per GPU (Ray packs
    fractions per GPU, so gpus/jobs would leave tasks waiting when jobs is not a multiple),
    rounded down to Ray's 0.0001 precision."""
    if gpus < 1:
        raise TicketlabError("the Ray cluster has no GPU; use --device cpu, or a cluster with GPUs")
    if jobs <= gpus:
        return 1.0
    return math.floor(10_000 / math.ceil(jobs / gpus)) / 10_000
