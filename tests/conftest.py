"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE is set before anything imports
huggingface_hub, and every model a test uses is a tiny random-weight one written to disk."""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
