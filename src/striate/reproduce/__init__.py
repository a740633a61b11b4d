"""Reproducing, resuming and moving runs."""
