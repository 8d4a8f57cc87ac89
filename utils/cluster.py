"""Runs that span several machines (nodes): where each rank runs, the layout record, the check that
every node sees the run folder, each rank's device use, and what a preemption signal means.

The deepspeed launcher starts one process per device on each node and tells it where it is:
RANK / WORLD_SIZE (global), LOCAL_RANK / LOCAL_SIZE (on its node) and CROSS_RANK / CROSS_SIZE (the
node's index and the number of nodes). Ranks are numbered node after node, so the ranks of a node
are consecutive; node_local_topology() puts consecutive ranks in one pipeline, which keeps the
stages of a pipeline on one node (activations travel over its fast links) and spreads the
data-parallel replicas over the nodes (only the small LoRA gradients cross the network).

    topo = node_local_topology(stages=2, dp_world=8)       # PipelineModule(topology=topo)
    me = describe_rank(rank, stage, dp_rank, device)
    layout = layout_record(all_gather(me), stages, dp_world); print(format_layout(layout))
    problem = nodes_see_run_dir(run_dir, deepspeed.comm)   # None, or which node cannot see the run folder
"""

import json
import os
import signal
import socket
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

REQUEUE_EXIT = 75            # EX_TEMPFAIL: a checkpoint was written, start this command again to continue
PREEMPTED_MARKER = 'preempted'   # <run>/preempted (the step), written by rank 0 with that checkpoint: a batch
                                 # script reads it, since srun reports 128+signal once it has killed a node's rest
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)     # SIGUSR1: e.g. Slurm's --signal=USR1@120 before the limit
MARKERS = '.nodes'           # <run>/.nodes/node<N>.json while the start-up check runs


def node_index():
    """Index of this node among the run's nodes (the launcher's --node_rank)."""
    return int(os.environ.get('CROSS_RANK', 0))


def local_rank():
    return int(os.environ.get('LOCAL_RANK', 0))


def collective_timeout():
    """ODEO_COLLECTIVE_TIMEOUT (seconds): how long a rank waits in a collective for a peer that is gone
    (DeepSpeed's default, 30 minutes, when unset)."""
    value = os.environ.get('ODEO_COLLECTIVE_TIMEOUT')
    return timedelta(seconds=float(value)) if value else None


def resources_interval():
    """ODEO_RESOURCES_INTERVAL (seconds, default 60; 0 = never): how often every rank's device use is reported."""
    return float(os.environ.get('ODEO_RESOURCES_INTERVAL', 60))


def node_local_topology(stages, dp_world):
    """Rank r runs stage r % stages of replica r // stages: a pipeline is `stages` consecutive ranks."""
    from deepspeed.runtime.pipe.topology import ProcessTopology
    return ProcessTopology(axes=['data', 'pipe'], dims=[dp_world, stages])


# ------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------

def describe_rank(rank, stage, dp_rank, device):
    return {'rank': rank, 'node': node_index(), 'host': socket.gethostname(), 'local_rank': local_rank(),
            'stage': stage, 'dp_rank': dp_rank, 'device': str(device)}


def layout_record(ranks, stages, dp_world):
    """{nodes, world, stages, dp_world, per_node: [...], pipelines: [...], ranks: [...]} from every rank's
    describe_rank(); a pipeline whose stages lie on several nodes is listed in `split_pipelines`."""
    ranks = sorted(ranks, key=lambda r: r['rank'])
    per_node = defaultdict(list)
    for r in ranks:
        per_node[r['node']].append(r)
    pipelines = defaultdict(list)
    for r in ranks:
        pipelines[r['dp_rank']].append(r)
    pipes = [{'dp_rank': dp, 'ranks': [r['rank'] for r in sorted(rs, key=lambda r: r['stage'])],
              'nodes': sorted({r['node'] for r in rs})} for dp, rs in sorted(pipelines.items())]
    return {'nodes': len(per_node), 'world': len(ranks), 'stages': stages, 'dp_world': dp_world,
            'per_node': [{'node': n, 'host': rs[0]['host'], 'ranks': [r['rank'] for r in rs]}
                         for n, rs in sorted(per_node.items())],
            'pipelines': pipes, 'split_pipelines': [p['dp_rank'] for p in pipes if len(p['nodes']) > 1],
            'ranks': ranks}


def format_layout(layout):
    lines = [f"layout: {layout['nodes']} node(s), {layout['world']} rank(s) = {layout['stages']} pipeline stage(s) "
             f"x {layout['dp_world']} data-parallel replica(s)"]
    for node in layout['per_node']:
        cells = [f"r{r['rank']}:s{r['stage']}/d{r['dp_rank']}"
                 for r in layout['ranks'] if r['node'] == node['node']]
        lines.append(f"  node {node['node']} ({node['host']}): {' '.join(cells)}")
    if layout['split_pipelines']:
        lines.append(f"  warning: the pipelines of data-parallel replicas {layout['split_pipelines']} span nodes "
                     "(pipeline_stages does not divide the processes per node): their activations cross the network")
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------
# Does every node see the run folder?
# ------------------------------------------------------------------------------------------------

def write_node_marker(run_dir, token):
    """On each node's local rank 0: leave a marker in the run folder rank 0 created -> this node's report
    {node, host, error}. A node that does not find the folder's config.toml creates nothing."""
    run_dir = Path(run_dir)
    report = {'node': node_index(), 'host': socket.gethostname(), 'error': None}
    try:
        if not (run_dir / 'config.toml').is_file():
            report['error'] = f'{run_dir}/config.toml, written by rank 0, is not there'
            return report
        folder = run_dir / MARKERS
        folder.mkdir(exist_ok=True)
        (folder / f"node{report['node']}.json").write_text(json.dumps({**report, 'token': token}))
    except OSError as e:
        report['error'] = f'cannot write into {run_dir}: {e}'
    return report


def run_dir_problem(run_dir, token, reports):
    """On rank 0, with every node's report: None when each node's marker is here, else the reason."""
    folder = Path(run_dir) / MARKERS
    bad = []
    for report in sorted(reports, key=lambda r: r['node']):
        marker = folder / f"node{report['node']}.json"
        if report['error'] is None:
            try:
                if json.loads(marker.read_text()).get('token') == token:
                    continue
                why = 'its marker is a stale one'
            except (OSError, ValueError):
                why = 'the marker it wrote there is not visible here, so its folder of that name is another one'
        else:
            why = report['error']
        bad.append(f"node {report['node']} ({report['host']}): {why}")
    if not bad:
        return None
    return (f'not every node can see the run folder {run_dir}; put it (and output_dir) on a filesystem that every '
            'node mounts at the same path. ' + '; '.join(bad))


def nodes_see_run_dir(run_dir, dist):
    """A collective, right after the process group starts: each node's local rank 0 leaves a marker in the run
    folder and rank 0 checks every node's -> the reason some node cannot see the folder (on every rank), or None."""
    import uuid

    import torch.distributed
    token = [uuid.uuid4().hex]
    dist.broadcast_object_list(token, src=0)
    report = write_node_marker(run_dir, token[0]) if local_rank() == 0 else None
    reports = [None] * dist.get_world_size()
    torch.distributed.all_gather_object(reports, report)
    problem = [None]
    if dist.get_rank() == 0:
        problem[0] = run_dir_problem(run_dir, token[0], [r for r in reports if r is not None])
        remove_markers(run_dir)
    dist.broadcast_object_list(problem, src=0)
    return problem[0]


def leave_process_group(dist):
    """Every rank, before exiting together early: wait for the others, then close the process group (a process
    that exits with it open can abort in its communication threads instead of returning its exit status)."""
    import torch.distributed
    dist.barrier()
    torch.distributed.destroy_process_group()


def remove_markers(run_dir):
    folder = Path(run_dir) / MARKERS
    for f in folder.glob('node*.json'):
        f.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------
# Device use
# ------------------------------------------------------------------------------------------------

class DeviceUse:
    """This rank's device: GPU utilisation % and memory used / total (MiB), or on a CPU rank the
    process's CPU % (since the previous sample) and resident memory against the machine's memory."""

    def __init__(self, device):
        import psutil
        self.device = device
        self.process = psutil.Process()
        self.process.cpu_percent(None)          # the first call starts the measuring interval

    def sample(self):
        import psutil
        import torch
        mib = 2 ** 20
        if self.device.type == 'cuda':
            free, total = torch.cuda.mem_get_info(self.device)
            try:
                util = torch.cuda.utilization(self.device)
            except Exception:       # no NVML in this process: memory only
                util = None
            return {'kind': 'gpu', 'util_pct': util, 'mem_used_mib': round((total - free) / mib),
                    'mem_total_mib': round(total / mib),
                    'mem_peak_mib': round(torch.cuda.max_memory_allocated(self.device) / mib)}
        return {'kind': 'cpu', 'util_pct': round(self.process.cpu_percent(None), 1),
                'mem_used_mib': round(self.process.memory_info().rss / mib),
                'mem_total_mib': round(psutil.virtual_memory().total / mib)}
