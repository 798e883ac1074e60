"""Training: optimisers, learning-rate and margin schedules, and the trainer."""
