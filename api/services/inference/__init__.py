"""The Inference area: test runs as `infer` jobs, their request and results, what a task keeps for testing,
previews during training, the image gallery, and the ComfyUI backend (comfyui/)."""
