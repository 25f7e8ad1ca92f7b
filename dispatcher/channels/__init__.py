"""Channels: one per target type, each a real client of its protocol."""
