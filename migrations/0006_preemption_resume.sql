-- 0006: preemption and resume from the last checkpoint.
--
-- A preempted run (its worker was told to stop, e.g. by the cluster
-- scheduler, and the run saved a checkpoint) goes back to `queued` as a new
-- attempt, so its metric points stay apart (migration 0005), but the attempt
-- does not count against max_attempts: `preemptions` counts them and the
-- coordinator compares attempt - preemptions with max_attempts.
ALTER TABLE runs ADD COLUMN preemptions INTEGER NOT NULL DEFAULT 0 CHECK (preemptions >= 0);

-- 1 when the run's next start should resume from its last reported
-- checkpoint (after a preemption, a lost worker, or `assay retry --resume`).
ALTER TABLE runs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0 CHECK (resume = 0 OR resume = 1);

-- One row per attempt that started from a checkpoint: the checkpoint's step
-- and path, as the worker that started it reported (`started.resumed_from`).
-- The attempt's own points continue after `step`; below it the run's curve
-- takes the points of the attempt before (recursively).
CREATE TABLE run_resumes (
  run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  attempt         INTEGER NOT NULL CHECK (attempt >= 1),
  step            INTEGER NOT NULL CHECK (step >= 0),
  checkpoint_path TEXT NOT NULL,
  at              REAL NOT NULL,
  PRIMARY KEY (run_id, attempt)
) WITHOUT ROWID;

-- The attempts whose points make a run's curve, each with the bound below
-- which its points count: the current attempt (no bound), and for every
-- attempt that resumed at step s, the latest earlier attempt that logged
-- anything, below s (and below any bound already in force). "Latest that
-- logged" rather than "the one before": an attempt handed back unstarted
-- (leased as its worker was preempted) has no points and is skipped.
CREATE VIEW metric_curve_attempts AS
WITH RECURSIVE chain(run_id, attempt, below) AS (
  SELECT id, attempt, 9223372036854775807 FROM runs
  UNION ALL
  SELECT c.run_id,
         (SELECT max(m.attempt) FROM metrics m WHERE m.run_id = c.run_id AND m.attempt < c.attempt),
         min(c.below, rr.step + 1)
  FROM chain c JOIN run_resumes rr ON rr.run_id = c.run_id AND rr.attempt = c.attempt
  WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = c.run_id AND m.attempt < c.attempt)
)
SELECT run_id, attempt, below FROM chain;

-- The curve a user sees: one point per (run, key, step), from the latest
-- attempt of the chain that has it. A resumed attempt writes steps after its
-- checkpoint's step, the attempt before supplies steps up to and including
-- it (the checkpoint's own step was logged before the checkpoint), so
-- there is no gap and, as a step is taken from one attempt only, no double.
CREATE VIEW metric_curve AS
SELECT m.run_id, m.key_id, m.step, max(m.attempt) AS attempt, m.value, m.wall_time
FROM metric_curve_attempts c
JOIN metrics m ON m.run_id = c.run_id AND m.attempt = c.attempt AND m.step < c.below
GROUP BY m.run_id, m.key_id, m.step;

-- run_metric_summary follows the curve (for a run that never resumed, that
-- is its current attempt, as before).
DROP VIEW IF EXISTS runs_wide;
DROP VIEW IF EXISTS run_metric_summary;
CREATE VIEW run_metric_summary AS
SELECT c.run_id,
       k.name        AS metric,
       COUNT(*)      AS points,
       MAX(c.step)   AS last_step,
       (SELECT c2.value FROM metric_curve c2
         WHERE c2.run_id = c.run_id AND c2.key_id = c.key_id
         ORDER BY c2.step DESC LIMIT 1) AS final,
       MIN(c.value)  AS min,
       MAX(c.value)  AS max,
       r.attempt     AS attempt
FROM metric_curve c
JOIN runs r ON r.id = c.run_id
JOIN metric_keys k ON k.id = c.key_id
GROUP BY c.run_id, c.key_id;
