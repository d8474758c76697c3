-- 0001: the initial results schema.
-- Times are unix seconds (REAL). JSON columns hold text that json_extract reads.

CREATE TABLE sweeps (
  id           INTEGER PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE,
  spec_json    TEXT NOT NULL,
  content_hash TEXT NOT NULL,          -- sha256 of the canonical spec JSON
  created_at   REAL NOT NULL
);

CREATE TABLE workers (
  id             TEXT PRIMARY KEY,
  host           TEXT NOT NULL,
  gpus_json      TEXT NOT NULL DEFAULT '[]',   -- [{index, uuid, name, mem_total_mb, ...}]
  labels_json    TEXT NOT NULL DEFAULT '{}',
  cpus           INTEGER NOT NULL DEFAULT 1,
  registered_at  REAL NOT NULL,
  last_heartbeat REAL NOT NULL
);

-- State machine: queued -> leased -> running -> succeeded | failed | cancelled.
-- A lost lease sends leased/running back to queued with attempt + 1.
CREATE TABLE runs (
  id               INTEGER PRIMARY KEY,
  sweep_id         INTEGER REFERENCES sweeps(id) ON DELETE CASCADE,
  name             TEXT NOT NULL DEFAULT '',
  spec_json        TEXT NOT NULL,
  params_json      TEXT NOT NULL DEFAULT '{}',
  command          TEXT NOT NULL,
  state            TEXT NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued','leased','running','succeeded','failed','cancelled')),
  attempt          INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
  max_attempts     INTEGER NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
  priority         INTEGER NOT NULL DEFAULT 0,
  gpus             INTEGER NOT NULL DEFAULT 0 CHECK (gpus >= 0),
  gpu_mem_mb       INTEGER NOT NULL DEFAULT 0 CHECK (gpu_mem_mb >= 0),
  cpus             INTEGER NOT NULL DEFAULT 1 CHECK (cpus >= 0),
  labels_json      TEXT NOT NULL DEFAULT '{}',
  timeout_s        REAL,
  worker_id        TEXT REFERENCES workers(id),
  lease_expires_at REAL,
  failure_reason   TEXT CHECK (failure_reason IN
                   ('exit_code','signal','oom','timeout','lost_worker','cancelled','spawn_error')),
  failure_detail   TEXT,
  exit_code        INTEGER,
  created_at       REAL NOT NULL,
  started_at       REAL,
  finished_at      REAL
);
CREATE INDEX runs_by_state ON runs(state, priority DESC, id);
CREATE INDEX runs_by_sweep ON runs(sweep_id);

-- Audit log: every state change, with who made it.
CREATE TABLE run_events (
  id         INTEGER PRIMARY KEY,
  run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  at         REAL NOT NULL,
  actor      TEXT NOT NULL,            -- 'coordinator', 'worker:<id>', 'user', 'cli'
  kind       TEXT NOT NULL,            -- 'state', 'note', 'malformed_metric', ...
  from_state TEXT,
  to_state   TEXT,
  detail     TEXT
);
CREATE INDEX run_events_by_run ON run_events(run_id, id);

-- Metric names are interned: a point stores a small integer key.
CREATE TABLE metric_keys (
  id   INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);

-- One row per (run, key, step): a re-delivered point overwrites itself.
CREATE TABLE metrics (
  run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key_id    INTEGER NOT NULL REFERENCES metric_keys(id),
  step      INTEGER NOT NULL,
  value     REAL,
  wall_time REAL NOT NULL,
  PRIMARY KEY (run_id, key_id, step)
) WITHOUT ROWID;

-- Checkpoints and other outputs. parent_id gives lineage.
CREATE TABLE artifacts (
  id            INTEGER PRIMARY KEY,
  run_id        INTEGER REFERENCES runs(id) ON DELETE SET NULL,
  kind          TEXT NOT NULL DEFAULT 'checkpoint',
  content_hash  TEXT NOT NULL,
  path          TEXT NOT NULL,
  step          INTEGER,
  parent_id     INTEGER REFERENCES artifacts(id),
  metadata_json TEXT NOT NULL DEFAULT '{}',
  created_at    REAL NOT NULL,
  UNIQUE (run_id, kind, content_hash)
);
CREATE INDEX artifacts_by_hash ON artifacts(content_hash);

CREATE TABLE eval_results (
  id              INTEGER PRIMARY KEY,
  run_id          INTEGER REFERENCES runs(id) ON DELETE SET NULL,  -- the eval run, if any
  suite           TEXT NOT NULL,
  metric          TEXT NOT NULL,
  filter          TEXT NOT NULL DEFAULT 'none',
  value           REAL,
  stderr          REAL,
  n               INTEGER,
  suite_version   TEXT NOT NULL,
  checkpoint_hash TEXT NOT NULL DEFAULT '',
  seed            INTEGER NOT NULL DEFAULT 0,
  created_at      REAL NOT NULL,
  UNIQUE (checkpoint_hash, suite, suite_version, seed, metric, filter)
);

-- Views for people who query.

-- One row per (run, metric): final (value at the highest step), min, max.
CREATE VIEW run_metric_summary AS
SELECT m.run_id,
       k.name        AS metric,
       COUNT(*)      AS points,
       MAX(m.step)   AS last_step,
       (SELECT m2.value FROM metrics m2
         WHERE m2.run_id = m.run_id AND m2.key_id = m.key_id
         ORDER BY m2.step DESC LIMIT 1) AS final,
       MIN(m.value)  AS min,
       MAX(m.value)  AS max
FROM metrics m JOIN metric_keys k ON k.id = m.key_id
GROUP BY m.run_id, m.key_id;

-- One row per run with its sweep name; params stay JSON here (see runs_wide
-- for params and metrics flattened into columns).
CREATE VIEW run_summary AS
SELECT r.id AS run_id, s.name AS sweep, r.name, r.state, r.attempt, r.priority,
       r.gpus, r.failure_reason, r.exit_code, r.params_json, r.command,
       r.created_at, r.started_at, r.finished_at,
       CASE WHEN r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
            THEN r.finished_at - r.started_at END AS duration_s
FROM runs r LEFT JOIN sweeps s ON s.id = r.sweep_id;

-- One row per eval result, joined to the run that produced the checkpoint.
CREATE VIEW eval_summary AS
SELECT e.id AS eval_id, e.suite, e.suite_version, e.metric, e.filter, e.value, e.stderr, e.n,
       e.checkpoint_hash, a.step AS checkpoint_step, a.run_id AS producer_run_id,
       s.name AS producer_sweep, r.params_json AS producer_params, e.run_id AS eval_run_id,
       e.created_at
FROM eval_results e
LEFT JOIN artifacts a ON a.id = (SELECT a2.id FROM artifacts a2
                                  WHERE a2.content_hash = e.checkpoint_hash
                                  ORDER BY a2.id LIMIT 1)
LEFT JOIN runs r ON r.id = a.run_id
LEFT JOIN sweeps s ON s.id = r.sweep_id;
