"""The package version, in a module of its own so that any part of hf-vq can read it without importing the
package's `__init__` (which imports everything, and would close an import cycle)."""

__version__ = "0.1.0"
