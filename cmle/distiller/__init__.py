"""AEP Data Distiller's SQL ML as a challenger of cmle's model (AEP backend only).

:mod:`.sql` writes the statements (``CREATE MODEL``, ``model_evaluate``, ``model_predict``,
``SHOW MODELS``, ``DROP MODEL``) from Adobe's documented forms, :mod:`.results` reads what
they return, and :mod:`.challenger` runs the comparison from ``train`` (``distiller``
parameter). See docs/data-distiller.md.
"""
