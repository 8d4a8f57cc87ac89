"""Jobs of every kind: records, queue, scheduler, launch and supervision, processes, ports, GPUs, progress
from events.jsonl, logs, run directory contents, and the views of all of them (service.py)."""
