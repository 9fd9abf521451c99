"""napari adapters: reader, widgets and layer helpers. Thin wrappers, no science here.

Modules in this package import napari and Qt; the core (everything outside ``_napari``) never
imports this package.
"""
