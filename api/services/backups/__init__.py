"""Backups: scheduled snapshots of what the studio cannot recompute (service), how one is taken
(snapshot), which old ones go (retention), and putting one back (restore, also `tools/restore.sh`)."""
