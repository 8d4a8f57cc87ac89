"""The Models area: checkpoints under the model roots, downloads from a Hugging Face hub, deleting."""
