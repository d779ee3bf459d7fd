"""Secrets at rest, instance URL validation."""
