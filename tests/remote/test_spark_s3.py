"""engine = spark with s3:// storage on a local S3 server: a Spark session without the S3A
connector gets a message naming it (the Maven coordinates), not Spark's raw
'No FileSystem for scheme "s3"', and no score file is written."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cmle import naming, storage_schemes
from cmle.errors import CmleError
from cmle.platform import get_platform
from cmle.runner import run_stage
from tests.remote.servers import BUCKET
from tests.scoring.toy import put_scoring_set, scoring_table

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_score_on_spark_with_s3_storage_says_what_to_add(settings, champion, spark, s3_env, prefix):
    s3 = s3_env
    on_s3 = replace(settings, cloud=replace(settings.cloud, storage_url=f"s3://{BUCKET}/landing/{prefix}"),
                    platform=replace(settings.platform, engine="spark"))
    platform = get_platform(on_s3)
    try:
        export = put_scoring_set(platform, on_s3, scoring_table(n=80, seed=6))
    finally:
        platform.close()
    assert export.url.startswith(f"s3://{BUCKET}/landing/{prefix}/")

    with pytest.raises(CmleError) as err:
        run_stage("score", on_s3)
    msg = str(err.value)
    assert f"org.apache.hadoop:hadoop-aws:{storage_schemes.hadoop_version()}" in msg
    assert export.url.replace("s3://", "s3a://") in msg and "No FileSystem" not in msg
    scores = f"landing/{prefix}/{settings.cloud.import_path}/{naming.scores_folder(settings.platform.owner)}/"
    assert s3.keys(BUCKET, scores) == []
