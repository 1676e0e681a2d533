"""CLI commands beyond the core five; each module has `register(commands)` (cli.COMMAND_MODULES)."""
