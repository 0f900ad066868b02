"""Test doubles: stand-ins for the services ocsched talks to, for tests and benchmarks.

Nothing under `ocsched.commands` or `ocsched.adapters` imports this package at runtime.
"""
