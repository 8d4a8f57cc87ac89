"""Training tasks: task records, the config form, config checks, the trainer's command
line, and TrainingService (start, restart, continue, delete; task views)."""
