"""`python -m dlcli` is the `dlcli` command."""

from dlcli.cli import main

main()
