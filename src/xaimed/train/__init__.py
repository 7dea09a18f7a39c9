"""Training: the trainer and its settings, one fold's run, resume state."""
