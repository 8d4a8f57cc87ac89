"""Talking to ComfyUI: the HTTP + WebSocket client (client.py), API-format graph templates per Wan family
(graphs.py), and a ComfyUI started from the submodule checkout (managed.py). No Flask here."""
