"""engine = spark with cloud storage, on a real local Spark: the URL Spark reads (s3:// as
s3a://), the message naming the connector when the session has none, and the connector and
S3A settings a local session gets when cmle starts it for cloud storage (fetched through
Ivy from a Maven repository on disk, so no network is needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cmle import storage_schemes
from cmle.errors import CmleError
from cmle.spark import read

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
HADOOP = storage_schemes.hadoop_version()


def test_a_local_folder_is_read_as_it_is(spark, tmp_path):
    pq.write_table(pa.table({"userid": ["a", "b"]}), tmp_path / "part-0.parquet")
    assert sorted(r.userid for r in read(spark, str(tmp_path)).collect()) == ["a", "b"]


@pytest.mark.parametrize("url, scheme, coordinates", [
    ("s3://bucket/cmle/egress/ds/exportTime=20260101000000", "s3a", f"org.apache.hadoop:hadoop-aws:{HADOOP}"),
    ("s3a://bucket/cmle/egress/ds", "s3a", f"org.apache.hadoop:hadoop-aws:{HADOOP}"),
    ("abfss://box@acct.dfs.core.windows.net/cmle/egress", "abfss", f"org.apache.hadoop:hadoop-azure:{HADOOP}"),
    ("gs://bucket/cmle/egress", "gs", f"com.google.cloud.bigdataoss:gcs-connector:{storage_schemes.GCS_CONNECTOR_VERSION}"),
])
def test_a_session_without_the_connector_says_what_to_add(spark, url, scheme, coordinates):
    """Not Spark's raw 'No FileSystem for scheme': the Hadoop scheme, the exact Maven
    coordinates and how to add them."""
    with pytest.raises(CmleError) as err:
        read(spark, url)
    msg = str(err.value)
    assert coordinates in msg and f"{scheme}://" in msg and url in msg
    assert "No FileSystem" not in msg
    if url.startswith("s3://"):
        assert url.replace("s3://", "s3a://") in msg


_PROBE = textwrap.dedent("""
    import json, sys
    from cmle.errors import CmleError
    from cmle.spark import get_spark, read
    conf = {"spark.jars.ivySettings": sys.argv[1], "spark.jars.ivy": sys.argv[2]}
    try:
        spark = get_spark(conf=conf, storage_url="s3://bucket/landing")
    except CmleError as exc:
        print(json.dumps({"error": str(exc)}))
        sys.exit(0)
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    out = {"packages": spark.conf.get("spark.jars.packages"),
           "jars": spark.sparkContext.getConf().get("spark.jars", ""),
           "hadoop": {k: hconf.get(k) for k in ("fs.s3a.endpoint", "fs.s3a.path.style.access",
                                                 "fs.s3a.connection.ssl.enabled", "fs.s3a.endpoint.region",
                                                 "fs.s3a.aws.credentials.provider")}}
    try:
        read(spark, "s3://bucket/landing/x")
    except CmleError as exc:
        out["read_error"] = str(exc)
    print(json.dumps(out))
""")


def _ivy_settings(folder: Path, repo: Path) -> Path:
    """Ivy settings that resolve only from ``repo``, a Maven layout on disk."""
    path = folder / "ivysettings.xml"
    path.write_text(f"""<ivysettings>
  <settings defaultResolver="disk"/>
  <resolvers><ibiblio name="disk" m2compatible="true" root="{repo.as_uri()}/"/></resolvers>
</ivysettings>
""")
    return path


def _probe(tmp_path: Path, repo: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYSPARK_SUBMIT_ARGS", "SPARK_HOME"))}
    env.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_DEFAULT_REGION="eu-west-1",
               AWS_ACCESS_KEY_ID="probe-key", AWS_SECRET_ACCESS_KEY="probe-secret-value")
    res = subprocess.run([sys.executable, "-c", _PROBE, str(_ivy_settings(tmp_path, repo)), str(tmp_path / "ivy")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_local_session_for_s3_fetches_hadoop_aws_and_uses_the_standard_chain(tmp_path):
    """cmle starts the session with org.apache.hadoop:hadoop-aws:<Hadoop version> in
    spark.jars.packages (resolved here from a repository on disk holding a stand-in jar)
    and S3A reading AWS_ENDPOINT_URL and the SDK's default credential chain."""
    repo = tmp_path / "repo"
    folder = repo / "org" / "apache" / "hadoop" / "hadoop-aws" / HADOOP
    folder.mkdir(parents=True)
    (folder / f"hadoop-aws-{HADOOP}.pom").write_text(
        "<project><modelVersion>4.0.0</modelVersion><groupId>org.apache.hadoop</groupId>"
        f"<artifactId>hadoop-aws</artifactId><version>{HADOOP}</version></project>")
    with zipfile.ZipFile(folder / f"hadoop-aws-{HADOOP}.jar", "w") as jar:  # a stand-in: no S3A inside
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    out = _probe(tmp_path, repo)
    assert out["packages"] == f"org.apache.hadoop:hadoop-aws:{HADOOP}"
    assert f"hadoop-aws-{HADOOP}.jar" in out["jars"]
    assert out["hadoop"] == {"fs.s3a.endpoint": "http://127.0.0.1:9", "fs.s3a.path.style.access": "true",
                             "fs.s3a.connection.ssl.enabled": "false", "fs.s3a.endpoint.region": "eu-west-1",
                             "fs.s3a.aws.credentials.provider": storage_schemes.AWS_DEFAULT_CHAIN}
    # the stand-in jar has no S3A file system: reading says what to add, not a raw Hadoop error
    assert f"org.apache.hadoop:hadoop-aws:{HADOOP}" in out["read_error"]


def test_a_connector_that_cannot_be_fetched_is_a_clear_error(tmp_path):
    (tmp_path / "empty-repo").mkdir()
    out = _probe(tmp_path, tmp_path / "empty-repo")
    msg = out["error"]
    assert f"org.apache.hadoop:hadoop-aws:{HADOOP}" in msg and "Maven Central" in msg
    assert "PYSPARK_SUBMIT_ARGS='--jars" in msg and f"hadoop-aws-{HADOOP}.jar" in msg
