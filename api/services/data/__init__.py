"""The Data area: datasets, uploads, media previews, caption files, auto-captioning jobs, cutting, imports,
bucket views, and DataService, the one place the data routes call."""
