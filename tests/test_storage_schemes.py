"""What each cloud storage scheme needs: the extra that installs its driver, the URL Spark
reads it with, the settings of a local Spark session, and the errors that name them."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from cmle import storage, storage_schemes, tracking
from cmle.errors import ConfigError
from cmle.runner import run_stage
from cmle.storage_schemes import AWS_DEFAULT_CHAIN, hadoop_url, spark_conf


@pytest.mark.parametrize("url, databricks, expected", [
    ("s3://bucket/p/q", False, "s3a://bucket/p/q"),
    ("s3://bucket/p/q", True, "s3://bucket/p/q"),  # the Databricks runtime serves s3:// itself
    ("s3a://bucket/p", False, "s3a://bucket/p"),
    ("gcs://bucket/p", False, "gs://bucket/p"),
    ("gs://bucket/p", True, "gs://bucket/p"),
    ("abfss://box@acct.dfs.core.windows.net/p", False, "abfss://box@acct.dfs.core.windows.net/p"),
    ("/tmp/landing/cmle", False, "/tmp/landing/cmle"),
    ("relative/landing", False, "relative/landing"),
])
def test_hadoop_url(url, databricks, expected):
    assert hadoop_url(url, databricks=databricks, env={}) == expected


def test_az_urls_need_the_account_for_spark():
    env = {"AZURE_STORAGE_ACCOUNT_NAME": "acct"}
    assert hadoop_url("az://box/cmle/egress", env=env) == "abfss://box@acct.dfs.core.windows.net/cmle/egress"
    with pytest.raises(ConfigError, match=r"abfss://box@<account>\.dfs\.core\.windows\.net/cmle/egress"):
        hadoop_url("az://box/cmle/egress", env={})


def test_spark_conf_for_s3_uses_the_standard_chain_and_aws_endpoint_url(tmp_path):
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-central-1",
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret"}
    conf = spark_conf("s3://bucket/landing", env=env, dirs=[tmp_path])
    assert conf == {
        "spark.jars.packages": f"org.apache.hadoop:hadoop-aws:{storage_schemes.DEFAULT_HADOOP_VERSION}",
        "spark.hadoop.fs.s3a.aws.credentials.provider": AWS_DEFAULT_CHAIN,
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-central-1",
    }
    assert not {"AKIAEXAMPLE", "very-secret"} & set(conf.values())  # credentials stay in the chain
    # the S3-specific endpoint variable wins; https keeps TLS; no endpoint: AWS itself
    conf = spark_conf("s3://b/p", env={**env, "AWS_ENDPOINT_URL_S3": "https://minio.example:9000"}, dirs=[tmp_path])
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "https://minio.example:9000"
    assert "spark.hadoop.fs.s3a.connection.ssl.enabled" not in conf
    conf = spark_conf("s3://b/p", env={}, dirs=[tmp_path])
    assert set(conf) == {"spark.jars.packages", "spark.hadoop.fs.s3a.aws.credentials.provider"}


def test_spark_conf_adds_the_connector_only_when_the_user_has_not_chosen_the_jars(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "hadoop-client-api-3.4.2.jar").touch()
    assert storage_schemes.hadoop_version([jars]) == "3.4.2"
    conf = spark_conf("s3://b/p", conf={"spark.jars.packages": "io.delta:delta-spark_2.13:4.0.0"}, env={},
                      dirs=[jars])
    assert conf["spark.jars.packages"] == "io.delta:delta-spark_2.13:4.0.0,org.apache.hadoop:hadoop-aws:3.4.2"
    assert "spark.jars.packages" not in spark_conf("s3://b/p", env={"PYSPARK_SUBMIT_ARGS": "--jars /x.jar pyspark-shell"},
                                                   dirs=[jars])
    assert "spark.jars.packages" not in spark_conf("s3://b/p", conf={"spark.jars": "/opt/hadoop-aws-3.4.2.jar"},
                                                   env={}, dirs=[jars])
    (jars / "hadoop-aws-3.4.2.jar").touch()
    assert "spark.jars.packages" not in spark_conf("s3://b/p", env={}, dirs=[jars])
    assert spark_conf("abfss://box@acct.dfs.core.windows.net/p", env={}, dirs=[tmp_path]) == {
        "spark.jars.packages": f"org.apache.hadoop:hadoop-azure:{storage_schemes.DEFAULT_HADOOP_VERSION}"}
    assert spark_conf("gs://b/p", env={}, dirs=[tmp_path]) == {}  # the shaded jar is named, not fetched
    assert spark_conf("/tmp/landing", env={}, dirs=[tmp_path]) == {}


def test_missing_connector_message_names_exact_coordinates():
    msg = storage_schemes.missing_connector_message("gs://b/p", "3.5.0")
    assert f"gcs-connector-{storage_schemes.GCS_CONNECTOR_VERSION}-shaded.jar" in msg
    assert f"com.google.cloud.bigdataoss:gcs-connector:{storage_schemes.GCS_CONNECTOR_VERSION}" in msg
    msg = storage_schemes.missing_connector_message("s3://b/p", "3.5.0")
    assert "--packages org.apache.hadoop:hadoop-aws:3.5.0" in msg and "s3a://b/p" in msg
    assert storage_schemes.is_missing_filesystem(Exception('org.apache.hadoop.fs.UnsupportedFileSystemException: '
                                                           'No FileSystem for scheme "s3a"'))
    assert storage_schemes.is_missing_filesystem(Exception("java.lang.ClassNotFoundException: Class "
                                                           "org.apache.hadoop.fs.s3a.S3AFileSystem not found"))
    assert not storage_schemes.is_missing_filesystem(Exception("Path does not exist: s3a://b/p"))


@pytest.fixture
def without(monkeypatch):
    """Make modules look not installed (import fails, find_spec finds nothing)."""
    def hide(*names):
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)
    return hide


@pytest.mark.parametrize("url, extra, package", [
    ("s3://bucket/landing", "s3", "s3fs"),
    ("abfss://box@acct.dfs.core.windows.net/landing", "azure", "adlfs"),
    ("gs://bucket/landing", "gcs", "gcsfs"),
])
def test_storage_without_its_driver_names_the_extra(url, extra, package, without):
    without("s3fs", "adlfs", "gcsfs")
    for call in (lambda: storage_schemes.require_driver(url), lambda: storage.list_exports(url, "p", "ds")):
        with pytest.raises(ConfigError) as err:
            call()
        assert f"pip install 'cmle[{extra}]'" in str(err.value) and package in str(err.value)


def test_unsupported_schemes_are_refused_and_local_folders_pass(tmp_path):
    with pytest.raises(ConfigError, match="hdfs:// is not a supported storage"):
        storage_schemes.require_driver("hdfs://nn/landing")
    storage_schemes.require_driver(str(tmp_path))
    storage_schemes.require_driver("relative/folder")


def test_a_stage_with_s3_storage_and_no_s3fs_fails_before_doing_anything(settings, without, tmp_cwd):
    without("s3fs")
    s3 = replace(settings, cloud=replace(settings.cloud, storage_url="s3://bucket/landing"))
    with pytest.raises(ConfigError, match=r"cmle\[s3\]"):
        run_stage("synthetic", s3, {"profiles": 50})
    assert not (tmp_cwd / ".cmle").exists() and not (tmp_cwd / "mlflow.db").exists()


def test_an_s3_artifact_store_without_boto3_names_the_extra(settings, mlflow_store, without):
    import mlflow

    mlflow.create_experiment("on-s3", artifact_location="s3://bucket/mlflow")
    without("boto3")
    with pytest.raises(ConfigError, match=r"on Amazon S3, which MLflow reaches with the boto3 package: pip install "
                                          r"'cmle\[s3\]'"):
        tracking.setup(replace(settings, mlflow=replace(settings.mlflow, experiment_name="on-s3")))
    storage_schemes.require_artifact_driver("mlflow-artifacts:/1/abc")  # proxied by the server: nothing needed
    storage_schemes.require_artifact_driver("/tmp/mlartifacts")


def test_a_sagemaker_tracking_arn_without_its_plugin_says_what_to_install(without):
    without("sagemaker_mlflow")
    with pytest.raises(ConfigError, match=r"sagemaker-mlflow==0\.5\.0"):
        tracking.require_tracking_plugin("arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/cmle")
    tracking.require_tracking_plugin("http://127.0.0.1:5000")
