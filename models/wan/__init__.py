"""Wan2.1 / Wan2.2: variants, checkpoint loading in every layout users download, tiny test models."""
