"""Development and test support for imgsweep: not part of the product, and not in its wheel or image.

``python -m devkit demo`` runs the whole main job on one machine; ``python -m devkit produce-sample`` produces a
realistic stream of delist events; the tests and the benchmarks start the service, the sandbox and the broker
as processes through :mod:`devkit.processes`. Importable from a source checkout (run from its root).
"""
