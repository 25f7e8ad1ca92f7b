"""Subscriptions: who wants which events, delivered where."""
