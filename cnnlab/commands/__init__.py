"""CLI commands beyond the core five; each module has `register(commands)` (see cli.COMMAND_MODULES)."""
