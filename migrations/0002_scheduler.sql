-- 0002: coordinator scheduling bookkeeping.

-- Where a run was last placed. Kept after the run ends so late reports from
-- the same worker and attempt (spooled metrics, a repeated 'finished') can be
-- told apart from stale ones.
CREATE TABLE run_placement (
  run_id    INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
  worker_id TEXT NOT NULL,
  attempt   INTEGER NOT NULL,
  gpus_json TEXT NOT NULL DEFAULT '[]',   -- worker GPU indices, e.g. [0,1]
  cpus      INTEGER NOT NULL DEFAULT 0,
  leased_at REAL NOT NULL
);

-- A user asked to cancel a running run; cleared when the run ends.
CREATE TABLE run_cancel_requests (
  run_id       INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
  requested_at REAL NOT NULL
);

-- Metric batches already applied, for exact de-duplication of re-sent batches.
CREATE TABLE metric_batches (
  run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  batch_seq   INTEGER NOT NULL,
  points      INTEGER NOT NULL,
  received_at REAL NOT NULL,
  PRIMARY KEY (run_id, attempt, batch_seq)
) WITHOUT ROWID;

-- The process instance each worker registered with last (a new instance means
-- the worker restarted and its old runs are gone).
CREATE TABLE worker_instances (
  worker_id  TEXT PRIMARY KEY,
  instance   TEXT NOT NULL,
  max_runs   INTEGER NOT NULL DEFAULT 0,
  updated_at REAL NOT NULL
);
