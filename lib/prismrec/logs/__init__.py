"""Behaviour logs: raw sources and synthetic logs with planted interests."""
