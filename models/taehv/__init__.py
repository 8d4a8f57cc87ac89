"""TAEHV: a tiny autoencoder for Wan latents (models/taehv/model.py), its trainer (train_taehv.py)."""
