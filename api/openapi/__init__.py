"""The OpenAPI 3 document of /api/v1: schema building blocks (types), one module of component schemas
per area (system, jobs, training, data, inference, models, backups), and build_spec (spec) that walks the routes."""
