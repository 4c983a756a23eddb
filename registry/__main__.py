from registry.cli import entry

entry()
