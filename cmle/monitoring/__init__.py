"""Closing the loop: drift (population stability), realised outcomes and the retraining trigger.

Pure logic here (:mod:`.psi`, :mod:`.reference`, :mod:`.outcomes`, :mod:`.trigger`); the
MLflow history and the realised evidence other stages read are in :mod:`.history`; the
stage itself is :mod:`cmle.stages.monitor`.
"""
