"""Training tasks: task records, the config form, config checks, the model catalog, the trainer's command
line, and TrainingService (start, restart, continue, delete; task views)."""
