"""Trainer tests: train.py launched for real with DeepSpeed on CPU ranks (gloo), the Wan adapter's networks in
process, checkpoint layouts against the official Wan code, config schema, optimizers, schedules, events.

Fixtures: `tiny_models` (tests/conftest.py); helpers in tests/support/trainer.py (config writing, the trainer's
environment, reading events.jsonl) and tests/support/wan_official.py (the official networks)."""
