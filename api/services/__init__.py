"""Studio services: plain Python, no Flask. Routes call these; tests drive them directly.

One subpackage per area (jobs/, training/, data/, inference/; map in docs/architecture.md, "Where things
live"); `studio.Studio` wires them together from a Settings object.
"""
