from ocsched.commands.cli import run

run()
