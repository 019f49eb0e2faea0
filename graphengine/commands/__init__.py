"""Subcommands of the ``graphengine`` CLI, one module each."""
