"""Running cmle on Databricks.

- :mod:`cmle.databricks.bundle` reads ``databricks.yml`` (the one definition of the job) and
  resolves a target into Jobs API 2.2 job settings, as ``databricks bundle deploy`` would.
- :mod:`cmle.databricks.deploy` deploys those settings with databricks-sdk (no Databricks CLI
  needed): uploads the wheel, creates or resets the job by name, optionally runs it.
- :mod:`cmle.databricks.secrets` reads credentials from a secret scope when running on
  Databricks (never from a file in the workspace).
- :mod:`cmle.databricks.unity_catalog` holds the Unity Catalog rules (three-level model names,
  aliases only).
"""
