"""Studio tests: the Flask app and its services (tasks, queue, scheduler, launcher, supervision, recovery, GPU
inventory, security, crash safety, OpenAPI, the layout rules of api/ and of the UI's modules).

Fixtures: `make_app`, `data_root`, `tiny_model` (tests/conftest.py); the fake trainer and GPUs in tests/fakes/,
a studio process in tests/support/studio.py."""
