-- The CMLE notebooks' training set (Week 2), kept as framing `cmle` for comparison.
--
-- One row per user over the whole history, no look-back window, no snapshot:
--   positives: the user's web.formFilledOut row, with features as of that row;
--   negatives: one pseudo-random row of each user who never converted.
-- Features are running counts and minutes-since over the user's events up to and
-- including the row (the notebooks' ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW).
--
-- Kept as the notebooks defined it: the label is "exactly one conversion in the whole
-- history" (a user with two is in neither class), and the row's own time is the snapshot.
-- Changed, so that it runs and compares: the random row is a seeded MD5 order of the
-- event ids instead of RANDN() (reproducible, and identical on Spark and DuckDB); the
-- propositionDismiss typo is fixed; minutes-since use UNIX_MICROS arithmetic in place of
-- the AEP-only TIME_BETWEEN_PREVIOUS_MATCH; "never happened" stays NULL (the notebooks'
-- fillna(0) was a training step, not SQL); helper columns (eventType, random row number)
-- are not output because they leak the label.
--
-- cmle.features.render fills ${events}, ${tenant}, ${conversion}, ${seed},
-- ${running_features} and ${feature_columns}.
WITH ev AS (
  SELECT
    ${tenant}.userid AS userid,
    _id,
    eventType AS event_type,
    `timestamp` AS ts
  FROM ${events}
  WHERE ${tenant}.userid IS NOT NULL
),
event_rows AS (
  SELECT
    userid,
    event_type,
    ts,
    COUNT(CASE WHEN event_type = '${conversion}' THEN 1 END) OVER (PARTITION BY userid) AS subscriptionOccurred,
    ROW_NUMBER() OVER (PARTITION BY userid ORDER BY MD5(CONCAT(_id, '${seed}')), _id) AS random_row_number_for_user,
    ${running_features}
  FROM ev
  WINDOW running AS (PARTITION BY userid ORDER BY ts, _id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT
  userid,
  ts AS snapshot_ts,
  CAST(CASE WHEN subscriptionOccurred = 1 THEN 1 ELSE 0 END AS INT) AS label,
  ${feature_columns}
FROM event_rows
WHERE (subscriptionOccurred = 1 AND event_type = '${conversion}')
   OR (subscriptionOccurred = 0 AND random_row_number_for_user = 1)
