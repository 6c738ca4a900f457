"""Run management commands; registered on `dlcli.cli.app` (being written)."""
