"""Batch scoring with the registered pyfunc: model resolution, score rows, score files, summaries.

- :mod:`cmle.scoring.model_ref`: an alias or version to one concrete model version.
- :mod:`cmle.scoring.schema`: the score row (Arrow schema, XDM fields, the ``_{tenant}`` shape).
- :mod:`cmle.scoring.batch`: score an export in bounded memory into atomic score files.
- :mod:`cmle.scoring.summary`: row count, score histogram and bucket counts of a run.
"""
