"""ocsched: a durable, event-sourced scheduler for OpenClaw agents and shell workflows."""

__version__ = "0.1.0"
