"""Governed promotion: which rows the gate compares on, evidence, approval, registry events, history.

The gate's decision rule itself is pure (:mod:`cmle.model.gate`, :mod:`cmle.model.comparison`);
this package holds what promotion needs around it:

- :mod:`.evaluation`: the rows neither model trained on, each model scored by its own version;
- :mod:`.evidence`: the interface through which realised outcomes (what happened after
  scoring) reach the gate, and its plug-in registry;
- :mod:`.approval`: human approval (pending → approved / rejected) on the model version;
- :mod:`.events`: MLflow webhooks fired by the registry when the champion alias moves;
- :mod:`.history`: the promotion history as a table.
"""
