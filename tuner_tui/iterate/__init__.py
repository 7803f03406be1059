"""Iterate: compare runs with paired statistics, sweep hyperparameters (`tuner compare`, `tuner sweep`)."""
