"""Everything that talks to the outside: the event store, read-model files, processes."""
