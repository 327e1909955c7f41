"""salbook: the library of the executable textbook on saliency maps.

Layers (each imports only those above it): ``config``/``storage`` → ``data`` → ``nets``/``zoo`` →
``methods`` (attribution maps, Captum-shaped) → ``yardsticks`` (numbers from maps) → ``results``
(run records) and ``plots`` (one figure style).
"""
__version__ = "0.1.0"
