"""Single source of the package version (pyproject.toml reads the same number)."""
__version__ = "0.1.0"
