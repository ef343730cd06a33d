"""Backends: where queries really run. Each knows its engine and nothing of policies or protocols."""
