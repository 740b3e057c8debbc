"""Influential factors of a score: which features pushed each profile's propensity up
(:mod:`.factors`), with the tree models made explainable exactly (:mod:`.trees`)."""
