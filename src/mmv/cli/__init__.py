"""The `mmv` command line: a thin Typer layer over the core package."""
