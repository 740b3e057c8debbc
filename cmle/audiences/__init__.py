"""Audiences from score rules: :mod:`cmle.audiences.rules` (pure: parse, PQL, evaluate, reach)
and :mod:`cmle.audiences.plots` (the reach curve figure)."""
