-- 0007: a summary row per (run, attempt, metric), kept on ingest, so that a
-- run's final value, min and max are one row to read instead of a scan of
-- every point (a top-20 leaderboard over 10,000 runs x 1,000 points read
-- 10M points through run_metric_summary).
--
-- The store writes it in the transaction that writes the points
-- (store/src/metric_summary.cpp): a batch is aggregated per (run, attempt,
-- metric) first and applied as one upsert each. Anything that changes a
-- run's curve (migration 0006) other than new points at the end -- a
-- resume, a point that overwrites another with a different value, a point
-- for an attempt below a resumed one -- recomputes the affected rows from
-- `metrics`, so the table always equals a full scan.

DROP VIEW IF EXISTS runs_wide;
DROP VIEW IF EXISTS run_metric_summary;
DROP VIEW IF EXISTS run_metric_summary_by_attempt;

-- Values are REAL or NULL (a NaN point is stored as NULL): min/max ignore
-- NULLs, points counts them, last_value is NULL when the last point is.
CREATE TABLE metric_summary (
  run_id           INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  attempt          INTEGER NOT NULL CHECK (attempt >= 1),
  key_id           INTEGER NOT NULL REFERENCES metric_keys(id),
  -- This attempt's own points.
  points           INTEGER NOT NULL DEFAULT 0 CHECK (points >= 0),
  last_step        INTEGER,
  last_value       REAL,
  min_value        REAL,
  max_value        REAL,
  -- For an attempt that resumed from a checkpoint (run_resumes): the points
  -- of earlier attempts that the run's curve takes below the resume step
  -- (metric_curve with this attempt as the current one), less the steps this
  -- attempt logged itself. Zero/NULL for an attempt that did not resume.
  prior_points     INTEGER NOT NULL DEFAULT 0 CHECK (prior_points >= 0),
  prior_last_step  INTEGER,
  prior_last_value REAL,
  prior_min        REAL,
  prior_max        REAL,
  -- The run's curve while this attempt is current: both parts (their steps
  -- are disjoint). This is what run_metric_summary shows.
  curve_points     INTEGER GENERATED ALWAYS AS (points + prior_points) VIRTUAL,
  curve_last_step  INTEGER GENERATED ALWAYS AS (
    CASE WHEN prior_points = 0 THEN last_step
         WHEN points = 0 THEN prior_last_step
         ELSE max(last_step, prior_last_step) END) VIRTUAL,
  -- CAST and no declared type: SQLite keeps an integral REAL as an integer
  -- in a record, and a generated column of REAL affinity read back through
  -- a sorter (ORDER BY) comes out as that integer; without an affinity the
  -- value stays REAL.
  final            GENERATED ALWAYS AS (CAST(
    CASE WHEN prior_points = 0 OR (points > 0 AND last_step > prior_last_step)
         THEN last_value ELSE prior_last_value END AS REAL)) VIRTUAL,
  curve_min        GENERATED ALWAYS AS (CAST(
    coalesce(min(min_value, prior_min), min_value, prior_min) AS REAL)) VIRTUAL,
  curve_max        GENERATED ALWAYS AS (CAST(
    coalesce(max(max_value, prior_max), max_value, prior_max) AS REAL)) VIRTUAL,
  PRIMARY KEY (run_id, attempt, key_id)
) WITHOUT ROWID;

-- Leaderboards: one metric's rows in order of their final value (top-k by
-- final loss reads k rows plus those of non-current attempts it skips).
CREATE INDEX metric_summary_by_final ON metric_summary(key_id, final);

-- Backfill: each attempt's own points.
INSERT INTO metric_summary(run_id, attempt, key_id, points, last_step, last_value,
                           min_value, max_value)
SELECT m.run_id, m.attempt, m.key_id, count(*), max(m.step),
       (SELECT m2.value FROM metrics m2
         WHERE m2.run_id = m.run_id AND m2.attempt = m.attempt AND m2.key_id = m.key_id
         ORDER BY m2.step DESC LIMIT 1),
       min(m.value), max(m.value)
FROM metrics m
GROUP BY m.run_id, m.attempt, m.key_id;

-- Backfill: the prior part of every resumed attempt, by the chain of
-- metric_curve_attempts (0006) started at that attempt instead of the run's
-- current one. store/src/metric_summary.cpp runs the same statement for one
-- run when its curve changes.
INSERT INTO metric_summary(run_id, attempt, key_id, prior_points, prior_last_step,
                           prior_last_value, prior_min, prior_max)
WITH RECURSIVE chain(run_id, start, attempt, below) AS (
  SELECT run_id, attempt, attempt, 9223372036854775807 FROM run_resumes
  UNION ALL
  SELECT c.run_id, c.start,
         (SELECT max(m.attempt) FROM metrics m WHERE m.run_id = c.run_id AND m.attempt < c.attempt),
         min(c.below, rr.step + 1)
  FROM chain c JOIN run_resumes rr ON rr.run_id = c.run_id AND rr.attempt = c.attempt
  WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = c.run_id AND m.attempt < c.attempt)
),
curve AS (
  SELECT c.run_id, c.start, m.key_id, m.step, max(m.attempt) AS attempt, m.value
  FROM chain c
  JOIN metrics m ON m.run_id = c.run_id AND m.attempt = c.attempt AND m.step < c.below
  GROUP BY c.run_id, c.start, m.key_id, m.step
),
prior AS (
  SELECT run_id, start, key_id, step, value,
         first_value(value) OVER (PARTITION BY run_id, start, key_id ORDER BY step DESC) AS lastv
  FROM curve WHERE attempt < start
)
SELECT run_id, start, key_id, count(*), max(step), max(lastv), min(value), max(value)
FROM prior
WHERE true
GROUP BY run_id, start, key_id
ON CONFLICT(run_id, attempt, key_id) DO UPDATE SET
  prior_points = excluded.prior_points, prior_last_step = excluded.prior_last_step,
  prior_last_value = excluded.prior_last_value, prior_min = excluded.prior_min,
  prior_max = excluded.prior_max;

-- One row per run and metric of the run's curve (as 0006 defined it): the
-- current attempt's row, which carries the resumed-from part.
CREATE VIEW run_metric_summary AS
SELECT s.run_id,
       k.name            AS metric,
       s.curve_points    AS points,
       s.curve_last_step AS last_step,
       s.final           AS final,
       s.curve_min       AS min,
       s.curve_max       AS max,
       r.attempt         AS attempt
FROM metric_summary s
JOIN runs r ON r.id = s.run_id AND r.attempt = s.attempt
JOIN metric_keys k ON k.id = s.key_id
WHERE s.curve_points > 0;

-- Every attempt's own points (as 0005 defined it); `current` is 1 for the
-- run's current attempt.
CREATE VIEW run_metric_summary_by_attempt AS
SELECT s.run_id,
       s.attempt,
       (s.attempt = r.attempt) AS current,
       k.name       AS metric,
       s.points     AS points,
       s.last_step  AS last_step,
       s.last_value AS final,
       s.min_value  AS min,
       s.max_value  AS max
FROM metric_summary s
JOIN runs r ON r.id = s.run_id
JOIN metric_keys k ON k.id = s.key_id
WHERE s.points > 0;
