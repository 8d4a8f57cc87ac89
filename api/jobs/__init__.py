"""Job processes other than training: each module here runs as `python -m api.jobs.<kind> --run_dir <run>`,
reads <run>/job.json (written by the studio), and speaks the job protocol of docs/architecture.md
(events.jsonl through utils.events.EventWriter, control/ files, log.txt). Each kind is registered by its
area service's constructor (api.services.jobs.launcher.register_kind). These modules never import Flask."""
