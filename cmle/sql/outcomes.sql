-- Realised outcomes of one score run: what happened to the scored profiles in the outcome
-- window (T, T + W] after the score run's snapshot T, by the model spec's label definition
-- (the same goal predicate, window and label expression as the training set,
-- cmle.features.render._Sql), joined with the scores and grouped into cells.
--
-- Spark SQL (AEP Query Service, Databricks, pyspark); translated for DuckDB like the feature SQL.
--
-- cmle.features.render.outcome_sql fills every ${name}:
--   ${events}, ${identity}, ${ts}, ${event_code}, ${goal_columns}   as in features.sql
--   ${t}, ${scan_end}        T and T + W as TIMESTAMP literals
--   ${goal_filter}           " AND (<goal predicate>)" (empty when any event is the goal)
--   ${goals_after}           the per-profile count of goal events in (T, T + W]
--   ${scores}                a SELECT of userid, propensity, bucket, decile of the score run
--   ${label_column}          the training set's label expression over per_user u
--
-- One row per cell: bucket, decile and propensity rounded to 1e-4, with the number of
-- profiles, of positives and the sum of propensities (cmle.monitoring.outcomes reads them).
WITH ev AS (
  SELECT
    ${identity} AS userid,
    UNIX_MICROS(${ts}) AS us,
    ${event_code} AS k${goal_columns}
  FROM ${events}
  WHERE ${ts} > ${t} AND ${ts} <= ${scan_end}${goal_filter}
    AND ${identity} IS NOT NULL
),
per_user AS (
  SELECT
    userid,
    ${goals_after}
  FROM ev
  GROUP BY userid
),
scored AS (
  ${scores}
),
realised AS (
  SELECT
    s.bucket AS bucket,
    s.decile AS decile,
    s.propensity AS propensity,
    ${label_column}
  FROM scored s
  LEFT JOIN per_user u ON s.userid = u.userid
)
SELECT
  bucket,
  decile,
  ROUND(propensity, 4) AS p_bin,
  COUNT(*) AS profiles,
  SUM(label) AS positives,
  SUM(propensity) AS propensity_sum
FROM realised
GROUP BY bucket, decile, ROUND(propensity, 4)
