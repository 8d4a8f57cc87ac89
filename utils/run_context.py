"""Where a training process runs: what the data, caching and saving code needs to know about it,
without reaching into the trainer.

    ctx = RunContext(rank=0, world=2, dp_world=1, device=torch.device('cpu'), barrier=dist.barrier,
                     events=events, run_dir=Path('runs/x'))
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class RunContext:
    rank: int                       # global rank of this process
    world: int                      # number of processes
    dp_world: int                   # data-parallel ranks: world // pipeline_stages
    device: Any                     # torch.device this rank computes on
    barrier: Callable[[], None]     # waits for every rank (deepspeed.comm.barrier)
    events: Any                     # utils.events.EventWriter (writes on global rank 0 only)
    run_dir: Path
