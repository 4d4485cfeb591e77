"""Loaders and baselines for the route solver benchmark."""
