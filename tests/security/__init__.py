"""Tests of secrets at rest, instance URL validation and API keys."""
