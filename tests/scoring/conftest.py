from tests.scoring.toy import champion, mlflow_db_template, own_store_settings, toy_registry  # noqa: F401 - fixtures
