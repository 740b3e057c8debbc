-- Point-in-time feature set: one row per eligible profile at snapshot time T, as a model
-- spec (conf/models/*.yaml) defines it.
--
-- Spark SQL (AEP Query Service, Databricks, pyspark); cmle.sql.to_duckdb translates it for
-- DuckDB. Only what both engines compute identically: conditional COUNT/SUM/MAX/MIN
-- aggregates, BIT_OR day masks (active days), a FULL OUTER JOIN, and integer
-- UNIX_MICROS arithmetic (exact on both). Timestamps are UTC: run with the session time
-- zone in UTC.
--
-- Speed: the per-profile aggregation evaluates many conditional aggregates per event row,
-- so every per-row input they share is computed once, as an integer, before it: the
-- event time in microseconds (us), an event-type code (k: the index of the type among the
-- spec's feature event types, the goal's types after them, -1 for any other type) and the
-- day of the look-back (d: 0 for the last day before T, NULL outside the look-back;
-- look_us likewise us, NULL outside the look-back), so the aggregates compare small
-- integers instead of strings and timestamps. "In the last n days" is d < n; "in the
-- look-back" is d IS NOT NULL. A goal with a field condition gets a 0/1 flag g, custom
-- numeric fields their per-event values v0, v1, ... (an array field: the sum over its
-- elements). A two-stage GROUP BY userid, type then a pivot per user measured slower on
-- DuckDB (the pivot of ~450k (user, type) rows into ~60 columns costs more than it saves).
--
-- cmle.features.render fills every ${name}:
--   ${events}, ${profile_cte}, ${profile_join}  tables and the profile part (empty without profiles)
--   ${identity}, ${ts}      the events' identity and timestamp expressions (from the spec)
--   ${t}, ${t_us}           the snapshot T: a TIMESTAMP literal, its UNIX microseconds
--   ${lookback_us}          UNIX microseconds of T - look-back (the look-back's first instant)
--   ${day_us}               microseconds per day
--   ${scan_end}             the newest event the query reads: T + W (training) or T (scoring)
--   ${scan_after_t}         which events after T are read: the goal's (" OR <goal>"), all, or none
--   ${event_code}, ${event_columns}  the CASE that maps the event type to k; g, v0, ... (if any)
--   ${day_columns}          g, v0, ... passed on
--   ${user_aggregates}      per-profile aggregates: eligibility, label, and the look-back
--                           window [T - lookback, T) and its recent windows
--   ${user_id}, ${label_column}, ${feature_columns}, ${eligible}   the output and who is in it
--
-- Features never see an event at or after T; the label sees only goal events in (T, T + W].
WITH ev AS (
  SELECT
    ${identity} AS userid,
    UNIX_MICROS(${ts}) AS us,
    ${event_code} AS k${event_columns}
  FROM ${events}
  WHERE ${ts} <= ${scan_end}${scan_after_t}
    AND ${identity} IS NOT NULL
),
ev_days AS (
  SELECT
    userid,
    us,
    k,${day_columns}
    CASE WHEN us >= ${lookback_us} AND us < ${t_us} THEN (${t_us} - 1 - us) DIV ${day_us} END AS d,
    CASE WHEN us >= ${lookback_us} AND us < ${t_us} THEN us END AS look_us
  FROM ev
),
per_user AS (
  SELECT
    userid,
    ${user_aggregates}
  FROM ev_days
  GROUP BY userid
)${profile_cte}
SELECT
  ${user_id} AS userid,
  ${t} AS snapshot_ts,
  ${label_column}${feature_columns}
FROM per_user u${profile_join}
WHERE ${eligible}
