"""The studio itself: its editable settings (the Settings page) and the resource samples (the GPUs area)."""
