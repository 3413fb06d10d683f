"""Certifiers: statistics that turn vote counts into certificates."""
