"""Studio services: plain Python, no Flask. Routes call these; tests drive them directly.

`studio.Studio` wires them together from a Settings object.
"""
