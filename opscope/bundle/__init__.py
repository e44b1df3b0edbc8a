"""Offline measurement bundles: compile here, measure on a device with only Python and numpy.

``write_bundle`` compiles the kernels and writes the folder (kernels, manifest, ``run.py``, TVM's
runtime); ``run.py`` measures them on the device into a results file; ``import_results`` brings
that file into a store with the device's fingerprint.  Imported lazily: no TVM at import.
"""

from __future__ import annotations

from opscope.lazy import lazy_exports

_API = {
    "write_bundle": "opscope.bundle.writer",
    "BundleInfo": "opscope.bundle.writer",
    "resolve_spec": "opscope.bundle.writer",
    "import_results": "opscope.bundle.importer",
    "ImportSummary": "opscope.bundle.importer",
    "copy_runtime": "opscope.bundle.runtime",
    "add_ffi_wheel": "opscope.bundle.runtime",
}

__all__ = list(_API)


__getattr__ = lazy_exports(__name__, _API)
