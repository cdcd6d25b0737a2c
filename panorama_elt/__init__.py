"""panorama-elt: copy MySQL and Open edX data into a Hive-partitioned CSV datalake."""

from panorama_elt.__about__ import __version__

__all__ = ["__version__"]
