"""Experiment config, search, pipeline and the `nas` CLI."""
