-- Point-in-time feature set: one row per eligible profile at snapshot time T.
--
-- Spark SQL (AEP Query Service, Databricks, pyspark); cmle.sql.to_duckdb translates it for
-- DuckDB. Only what both engines compute identically: conditional COUNT/MAX/MIN
-- aggregates, BIT_OR day masks (active days), a FULL OUTER JOIN, and UNIX_MICROS
-- arithmetic (exact on both). Timestamps are UTC: run with the session time zone in UTC.
--
-- cmle.features.render fills every ${name}:
--   ${events}, ${profiles}  table names; ${tenant} the custom-field root (_<tenant_id>)
--   ${t}                    the snapshot T, a TIMESTAMP literal
--   ${conversion}           the conversion event type (web.formFilledOut)
--   ${scan_end}             the newest event the query reads: T + W (training) or T (scoring)
--   ${label_aggregate}, ${label_column}   the label (training) or nothing (scoring)
--   ${event_aggregates}     per-profile aggregates over the look-back window [T - lookback, T)
--   ${feature_columns}      the feature expressions of the output
--
-- Eligible: no conversion at or before T, and known at T (an event before T, or a
-- profile that signed up before T). Features never see an event at or after T; the label
-- sees only conversions in (T, T + W].
WITH ev AS (
  SELECT
    ${tenant}.userid AS userid,
    `timestamp` AS ts,
    eventType AS event_type
  FROM ${events}
  -- after T only conversions matter (the label); other events there are left out early
  WHERE `timestamp` <= ${scan_end}
    AND (`timestamp` < ${t} OR eventType = '${conversion}')
    AND ${tenant}.userid IS NOT NULL
),
per_user AS (
  SELECT
    userid,
    MIN(ts) AS first_seen,
    MAX(CASE WHEN event_type = '${conversion}' AND ts <= ${t} THEN 1 ELSE 0 END) AS converted_before,
    ${label_aggregate}${event_aggregates}
  FROM ev
  GROUP BY userid
),
prof AS (
  -- One row per profile even if the profiles dataset holds several records of one.
  SELECT
    ${tenant}.userid AS userid,
    MAX(${tenant}.age) AS age,
    MAX(${tenant}.gender) AS gender,
    MAX(${tenant}.region) AS region,
    MAX(${tenant}.loyaltyTier) AS loyaltyTier,
    MIN(${tenant}.signupDate) AS signup_ts
  FROM ${profiles}
  WHERE ${tenant}.userid IS NOT NULL
  GROUP BY ${tenant}.userid
)
SELECT
  COALESCE(u.userid, p.userid) AS userid,
  ${t} AS snapshot_ts,
  ${label_column}${feature_columns}
FROM per_user u
FULL OUTER JOIN prof p ON u.userid = p.userid
WHERE COALESCE(u.converted_before, 0) = 0
  AND (u.first_seen < ${t} OR (p.userid IS NOT NULL AND (p.signup_ts IS NULL OR p.signup_ts < ${t})))
