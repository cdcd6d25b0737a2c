"""Package version, read by the Makefile, the Dockerfile and pyproject."""

__version__ = "0.1.0"
