"""Delivery: one event to one target, with retries, ending in exactly one outcome."""
