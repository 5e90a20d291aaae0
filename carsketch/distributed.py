"""Data parallelism on torch.distributed, launched by torchrun: no scheduler of our own.

A stage with `workers: 1` runs in its own process, with no launcher overhead. With more, it re-launches itself
under torchrun (`torch.distributed.run`) on this machine; on a cluster, torchrun is started by hand on each node
(README: Beyond one machine) and the stage finds itself already launched. Processes talk over gloo on CPU and NCCL for
CUDA tensors; rank 0 writes every output.
"""

import os
import shlex
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from carsketch.errors import PipelineError
from carsketch.torch_device import resolve_device

Result = TypeVar("Result")

# Extra torchrun arguments for the re-launch, in place of --standalone: a cluster's --nnodes, --rdzv-endpoint...
LAUNCH_ARGS_VARIABLE = "CARSKETCH_TORCHRUN_ARGS"


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes the outputs and prints: rank 0."""
    return rank_and_size()[0] == 0


def _launched() -> bool:
    return "LOCAL_RANK" in os.environ


def _relaunch(module: str, workers: int) -> None:
    """`python -m module` in `workers` processes under torchrun; returns once all have finished."""
    from torch.distributed.run import get_args_parser, run

    cores = len(os.sched_getaffinity(0))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))  # torchrun's default is 1 thread each
    launch_args = shlex.split(os.environ.get(LAUNCH_ARGS_VARIABLE, "--standalone"))
    args = get_args_parser().parse_args([*launch_args, f"--nproc-per-node={workers}", "-m", module])
    try:
        run(args)
    except ChildFailedError as error:
        failures = ", ".join(f"rank {rank} exit status {failure.exitcode}" for rank, failure in error.failures.items())
        raise PipelineError(f"{module} failed in {workers} torchrun processes ({failures}); its error is above") from None


def _device_for_this_process(device: torch.device) -> torch.device:
    if device.type != "cuda":
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if local_rank >= torch.cuda.device_count():
        raise PipelineError(f"{os.environ.get('LOCAL_WORLD_SIZE')} processes on this machine but only "
                            f"{torch.cuda.device_count()} CUDA GPU(s): lower workers (or torchrun's --nproc-per-node)")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def run_stage(module: str, workers: int, device_setting: str, body: Callable[[torch.device], None]) -> None:
    """Run body(device) in this process, or across `workers` processes under torchrun with the process group up.

    `module` is the stage's own `python -m` name, re-launched when workers > 1 and torchrun has not launched it yet.
    """
    device = resolve_device(device_setting)
    if not _launched():
        if workers > 1:
            _relaunch(module, workers)
        else:
            body(device)
        return
    device = _device_for_this_process(device)
    # CPU tensors (featurize's gathered batches, loss sums) go over gloo; CUDA tensors (DDP's gradients) over NCCL.
    dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    try:
        body(device)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def gather_on_main(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's CPU tensor (all of the same shape) on rank 0, in rank order; [] elsewhere; [tensor] alone."""
    rank, size = rank_and_size()
    if size == 1:
        return [tensor]
    gathered = [torch.empty_like(tensor) for _ in range(size)] if rank == 0 else None
    dist.gather(tensor, gathered, dst=0)
    return gathered or []


def computed_on_main(compute: Callable[[], Result]) -> Result:
    """compute() run by rank 0 alone and its result sent to every process (compute() itself outside
    torch.distributed): work whose result every process needs, done once."""
    rank, size = rank_and_size()
    if size == 1:
        return compute()
    result = [compute() if rank == 0 else None]
    dist.broadcast_object_list(result, src=0)
    return result[0]


def sum_over_processes(value: float) -> float:
    """`value` summed over all processes (itself alone)."""
    if rank_and_size()[1] == 1:
        return value
    total = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(total)
    return total.item()
