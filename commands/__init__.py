"""The `ocsched` command line and the service functions behind it."""
