"""What each cloud storage URL scheme needs, in one table, and the messages that say so.

Python side: exports and score files go through fsspec, so an ``s3://`` storage URL needs
s3fs, ``abfss://`` adlfs and ``gs://`` gcsfs; an MLflow artifact store on S3, Azure or GCS
needs the cloud's SDK in the client (boto3, azure-storage-*, google-cloud-storage). Each
comes with one extra of cmle (``pip install 'cmle[s3]'``), and a missing one is reported by
name before a stage starts (:func:`require_driver`, :func:`require_artifact_driver`).

Spark side (``engine = spark``): Spark reads through Hadoop file systems, whose schemes are
not fsspec's. ``s3://`` is read as ``s3a://`` (Hadoop's S3A connector, ``hadoop-aws``), except
on Databricks, whose runtime serves ``s3://`` itself; ``gcs://`` as ``gs://``; ``az://`` as
``abfss://container@account.dfs.core.windows.net`` (:func:`hadoop_url`). A local session that
cmle starts gets the connector (``spark.jars.packages``, fetched from Maven Central at start)
and S3A settings for the standard AWS credential chain and ``AWS_ENDPOINT_URL``
(:func:`spark_conf`); any other session that lacks it gets a message naming the exact Maven
coordinates (:func:`missing_connector_message`).

Credentials always come from each cloud's standard chain (environment, profile, instance or
workload identity); cmle never reads or writes them.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from cmle.errors import CmleError, ConfigError

# The Hadoop version of the pinned pyspark (4.3), for when its jars cannot be looked at.
DEFAULT_HADOOP_VERSION = "3.5.0"
GCS_CONNECTOR_VERSION = "3.1.22"
# S3A's own default chain lacks profiles, SSO and web identity; the SDK's default chain has
# them all (S3A takes SDK v2 providers by class name).
AWS_DEFAULT_CHAIN = "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"


@dataclass(frozen=True)
class Cloud:
    """One cloud's storage: what Python and Spark need to read and write its URLs."""

    name: str
    schemes: tuple[str, ...]  # fsspec URL schemes
    extra: str  # pip install 'cmle[<extra>]'
    packages: tuple[str, ...]  # what the extra installs, named in messages
    driver: str  # the module fsspec imports for these schemes
    artifact_schemes: tuple[str, ...]  # MLflow artifact URI schemes of this cloud
    artifact_driver: str  # the module MLflow's artifact repository imports
    hadoop_scheme: str  # the Hadoop scheme Spark reads these URLs with (off Databricks)
    connector_artifact: str  # Maven groupId:artifactId of the Hadoop connector
    connector_version: str  # "{hadoop}": the session's Hadoop version
    connector_jar: str  # the jar to fetch by hand (offline), "{version}" filled in
    fetch: bool  # True: cmle adds the connector to a local session it starts

    def connector(self, hadoop: str = DEFAULT_HADOOP_VERSION) -> str:
        """The connector's Maven coordinates (``group:artifact:version``)."""
        return f"{self.connector_artifact}:{self.version(hadoop)}"

    def version(self, hadoop: str = DEFAULT_HADOOP_VERSION) -> str:
        return self.connector_version.format(hadoop=hadoop)

    def pip(self) -> str:
        return f"pip install 'cmle[{self.extra}]' (installs {', '.join(self.packages)})"


S3 = Cloud(
    name="Amazon S3", schemes=("s3", "s3a"), extra="s3", packages=("s3fs", "boto3"), driver="s3fs",
    artifact_schemes=("s3",), artifact_driver="boto3",
    hadoop_scheme="s3a", connector_artifact="org.apache.hadoop:hadoop-aws", connector_version="{hadoop}",
    connector_jar="hadoop-aws-{version}.jar plus the software.amazon.awssdk:bundle jar its POM names", fetch=True)
AZURE = Cloud(
    name="Azure Data Lake Storage Gen2", schemes=("abfs", "abfss", "az"), extra="azure",
    packages=("adlfs", "azure-storage-file-datalake"), driver="adlfs",
    artifact_schemes=("abfss", "wasbs"), artifact_driver="azure.storage.blob",
    hadoop_scheme="abfss", connector_artifact="org.apache.hadoop:hadoop-azure", connector_version="{hadoop}",
    connector_jar="hadoop-azure-{version}.jar", fetch=True)
GCS = Cloud(
    name="Google Cloud Storage", schemes=("gs", "gcs"), extra="gcs", packages=("gcsfs",), driver="gcsfs",
    artifact_schemes=("gs",), artifact_driver="google.cloud.storage",
    hadoop_scheme="gs", connector_artifact="com.google.cloud.bigdataoss:gcs-connector",
    connector_version=GCS_CONNECTOR_VERSION,
    # Its plain artifact drags Guava/protobuf versions that clash with Spark's; the shaded jar
    # (a Maven classifier, which spark.jars.packages cannot name) is the one to use.
    connector_jar="gcs-connector-{version}-shaded.jar", fetch=False)
CLOUDS = (S3, AZURE, GCS)
_BY_SCHEME = {s: c for c in CLOUDS for s in c.schemes}
_BY_ARTIFACT_SCHEME = {s: c for c in CLOUDS for s in c.artifact_schemes}


def scheme(url: str) -> str:
    """The URL's scheme in lower case; "" for a local path (``C:\\`` included)."""
    head, sep, _ = str(url).partition("://")
    return head.lower() if sep and len(head) > 1 else ""


def cloud_of(url: str) -> Cloud | None:
    """The cloud whose storage ``url`` names; None for a local path."""
    return _BY_SCHEME.get(scheme(url))


def is_remote(url: str) -> bool:
    return cloud_of(url) is not None


def importable(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_driver_message(url: str, cause: object = "") -> str:
    """What to install for storage at ``url`` (named by scheme, extra and packages)."""
    cloud = cloud_of(url)
    why = f" ({cause})" if cause else ""
    if cloud is None:
        return f"storage URL {url}: {scheme(url)}:// is not a supported storage; use a folder, s3://, abfss:// or gs://"
    return (f"storage URL {url} is on {cloud.name}, which needs the {cloud.driver} package{why}: "
            f"{cloud.pip()}. Credentials come from the standard {cloud.name} chain in the environment.")


def require_driver(url: str) -> None:
    """Raise :class:`ConfigError` naming the extra when ``url``'s fsspec driver is not installed."""
    cloud = cloud_of(url)
    if (cloud is None and scheme(url)) or (cloud is not None and not importable(cloud.driver)):
        raise ConfigError("[Cloud] " + missing_driver_message(url))


def require_artifact_driver(artifact_uri: str) -> None:
    """Raise :class:`ConfigError` naming the extra when MLflow would need a cloud SDK that is
    not installed to reach ``artifact_uri`` (the experiment's artifact location)."""
    cloud = _BY_ARTIFACT_SCHEME.get(scheme(artifact_uri or ""))
    if cloud is not None and not importable(cloud.artifact_driver):
        raise ConfigError(f"the MLflow artifact store {artifact_uri} is on {cloud.name}, which MLflow reaches with "
                          f"the {cloud.artifact_driver.split('.')[0]} package: {cloud.pip()}. Credentials come from "
                          f"the standard {cloud.name} chain in the environment.")


# --- Spark (Hadoop file systems) ---------------------------------------------------------------

def hadoop_url(url: str, databricks: bool = False, env: Mapping[str, str] | None = None) -> str:
    """The URL Spark reads ``url`` with: ``s3://`` → ``s3a://`` (not on Databricks, whose
    runtime serves ``s3://``), ``gcs://`` → ``gs://``, ``az://container/path`` →
    ``abfss://container@<AZURE_STORAGE_ACCOUNT_NAME>.dfs.core.windows.net/path``; anything
    else as it is."""
    env = os.environ if env is None else env
    s = scheme(url)
    rest = str(url)[len(s) + 3:]
    if s == "s3" and not databricks:
        return f"s3a://{rest}"
    if s == "gcs":
        return f"gs://{rest}"
    if s == "az":
        account = env.get("AZURE_STORAGE_ACCOUNT_NAME", "")
        container, _, path = rest.partition("/")
        if not account:
            raise ConfigError(f"[Cloud] storage_url = {url}: Spark needs the storage account in the URL; write it "
                              f"as abfss://{container}@<account>.dfs.core.windows.net/{path} (or set "
                              "AZURE_STORAGE_ACCOUNT_NAME)")
        return f"abfss://{container}@{account}.dfs.core.windows.net/{path}"
    return str(url)


def jar_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Folders whose jars a local Spark session loads: ``$SPARK_HOME/jars`` and pyspark's own."""
    env = os.environ if env is None else env
    dirs = []
    if env.get("SPARK_HOME"):
        dirs.append(Path(env["SPARK_HOME"]) / "jars")
    spec = importlib.util.find_spec("pyspark") if importable("pyspark") else None
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "jars")
    return [d for d in dirs if d.is_dir()]


def hadoop_version(dirs: list[Path] | None = None) -> str:
    """The Hadoop version of the local Spark's jars (``hadoop-client-api-<v>.jar``)."""
    for d in dirs if dirs is not None else jar_dirs():
        for jar in sorted(glob.glob(str(d / "hadoop-client-api-*.jar"))):
            m = re.search(r"hadoop-client-api-(\d+\.\d+\.\d+)\.jar$", jar)
            if m:
                return m.group(1)
    return DEFAULT_HADOOP_VERSION


def _has_jar(cloud: Cloud, dirs: list[Path]) -> bool:
    artifact = cloud.connector_artifact.split(":")[1]
    return any(glob.glob(str(d / f"{artifact}-*.jar")) for d in dirs)


def _classpath_managed(conf: Mapping[str, str], env: Mapping[str, str], cloud: Cloud) -> bool:
    """True when the user already chose the session's jars (cmle then adds none)."""
    artifact = cloud.connector_artifact.split(":")[1]
    submit = env.get("PYSPARK_SUBMIT_ARGS", "")
    return ("--packages" in submit or "--jars" in submit
            or any(artifact in conf.get(k, "") for k in ("spark.jars", "spark.jars.packages")))


def spark_conf(storage_url: str, conf: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
               dirs: list[Path] | None = None) -> dict[str, str]:
    """Settings for a local Spark session that reads ``storage_url``: the connector's Maven
    coordinates in ``spark.jars.packages`` (unless its jar is there or the user chose the
    jars), and for S3 the SDK's default credential chain, ``AWS_ENDPOINT_URL`` (path-style
    access, as MinIO and other S3-compatible stores need) and the region. No credential is
    ever put in the settings."""
    cloud = cloud_of(storage_url)
    if cloud is None:
        return {}
    env = os.environ if env is None else env
    conf = dict(conf or {})
    dirs = jar_dirs(env) if dirs is None else dirs
    out: dict[str, str] = {}
    if cloud.fetch and not _has_jar(cloud, dirs) and not _classpath_managed(conf, env, cloud):
        packages = [p for p in conf.get("spark.jars.packages", "").split(",") if p.strip()]
        out["spark.jars.packages"] = ",".join([*packages, cloud.connector(hadoop_version(dirs))])
    if cloud is S3:
        out["spark.hadoop.fs.s3a.aws.credentials.provider"] = AWS_DEFAULT_CHAIN
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if endpoint:
            out["spark.hadoop.fs.s3a.endpoint"] = endpoint
            out["spark.hadoop.fs.s3a.path.style.access"] = "true"
            if urlsplit(endpoint).scheme == "http":
                out["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region:
            out["spark.hadoop.fs.s3a.endpoint.region"] = region
    return out


_NO_FILESYSTEM = re.compile(r"No FileSystem for scheme\W+(\w+)|Class (\S+FileSystem) not found")


def is_missing_filesystem(exc: BaseException) -> bool:
    """True when Spark failed because no Hadoop file system serves a URL's scheme."""
    return bool(_NO_FILESYSTEM.search(str(exc)))


def missing_connector_message(url: str, hadoop: str = DEFAULT_HADOOP_VERSION) -> str:
    """What to add to a Spark session that cannot read ``url``: the exact Maven coordinates."""
    cloud = cloud_of(url)
    target = hadoop_url(url) if cloud is not None and scheme(url) != "az" else url
    if cloud is None:
        return f"Spark has no Hadoop file system for {url}; use a folder, s3://, abfss:// or gs:// storage"
    jar = cloud.connector_jar.format(version=cloud.version(hadoop))
    how = (f"start Spark with --packages {cloud.connector(hadoop)} (or spark.jars.packages; cmle adds it to the "
           f"local session it starts itself, unless PYSPARK_SUBMIT_ARGS chooses the jars)"
           if cloud.fetch else
           f"put {jar} (Maven {cloud.connector(hadoop)}, classifier shaded) on spark.jars or in $SPARK_HOME/jars")
    return (f"engine = spark reads {url} as {target}, and this Spark session has no Hadoop file system for "
            f"{cloud.hadoop_scheme}:// ({cloud.name}): {how}. Offline, download {jar} and pass it with "
            f"PYSPARK_SUBMIT_ARGS='--jars <paths> pyspark-shell' or copy it to $SPARK_HOME/jars. On Databricks the "
            f"runtime serves {cloud.name}: check the cluster's access to it.")


def connector_fetch_failed_message(storage_url: str, cause: object, hadoop: str = DEFAULT_HADOOP_VERSION) -> str:
    """The error of a local session that could not start because its connector could not be fetched."""
    cloud = cloud_of(storage_url)
    assert cloud is not None
    jar = cloud.connector_jar.format(version=cloud.version(hadoop))
    return (f"the local Spark session for {storage_url} did not start: it fetches the {cloud.name} connector "
            f"{cloud.connector(hadoop)} from Maven Central at start (spark.jars.packages), and that failed (the "
            f"lines above say why; {cause}). Without access to Maven Central, download {jar} and set "
            f"PYSPARK_SUBMIT_ARGS='--jars <paths> pyspark-shell' (cmle then adds nothing) or copy the jars to "
            f"$SPARK_HOME/jars.")


__all__ = ["AZURE", "CLOUDS", "Cloud", "GCS", "S3", "cloud_of", "hadoop_url", "hadoop_version", "is_missing_filesystem",
           "is_remote", "missing_connector_message", "missing_driver_message", "require_artifact_driver",
           "require_driver", "scheme", "spark_conf"]
