"""Inference tests: infer jobs on the embedded diffusers pipelines and on ComfyUI (its stand-in in
tests/fakes/comfyui.py), the Inference studio's routes, and previews per saved epoch.

Fixtures: `preview_studio` (tests/support/previews.py, one 2-epoch training run per session), `make_app`,
`tiny_model`; video helpers in tests/support/inference.py."""
