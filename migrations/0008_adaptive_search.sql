-- 0008: adaptive search (ASHA / Hyperband rungs, TPE samples) and the
-- terminal run state `pruned`.
--
-- runs.state has a CHECK listing its states (0001), and SQLite cannot alter a
-- CHECK: runs is rebuilt (create, copy, drop, rename, recreate its indexes).
-- The migrator runs this with foreign keys off (a DROP TABLE would otherwise
-- cascade-delete every run's events, metrics and artifacts) and checks
-- PRAGMA foreign_key_check before committing. legacy_alter_table keeps the
-- rename from re-resolving the views that read runs (they name it by name
-- and read the new table as they did the old one).

PRAGMA legacy_alter_table = ON;

-- Same columns, in the same order, as runs after 0006. The CHECKs use
-- comparisons rather than IN lists (see 0004: SQLite builds a temporary
-- table for each IN list on every write to the row).
CREATE TABLE runs_v8 (
  id               INTEGER PRIMARY KEY,
  sweep_id         INTEGER REFERENCES sweeps(id) ON DELETE CASCADE,
  name             TEXT NOT NULL DEFAULT '',
  spec_json        TEXT NOT NULL,
  params_json      TEXT NOT NULL DEFAULT '{}',
  command          TEXT NOT NULL,
  state            TEXT NOT NULL DEFAULT 'queued'
                   CHECK (state = 'queued' OR state = 'leased' OR state = 'running' OR
                          state = 'succeeded' OR state = 'failed' OR state = 'cancelled' OR
                          state = 'pruned'),
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
  failure_reason   TEXT CHECK (failure_reason = 'exit_code' OR failure_reason = 'signal' OR
                               failure_reason = 'oom' OR failure_reason = 'timeout' OR
                               failure_reason = 'lost_worker' OR failure_reason = 'cancelled' OR
                               failure_reason = 'spawn_error'),
  failure_detail   TEXT,
  exit_code        INTEGER,
  created_at       REAL NOT NULL,
  started_at       REAL,
  finished_at      REAL,
  peak_gpu_mem_mb  INTEGER CHECK (peak_gpu_mem_mb >= 0),
  gpu_mem_source   TEXT CHECK (gpu_mem_source = 'process' OR gpu_mem_source = 'device'),
  reported_at      REAL,
  preemptions      INTEGER NOT NULL DEFAULT 0 CHECK (preemptions >= 0),
  resume           INTEGER NOT NULL DEFAULT 0 CHECK (resume = 0 OR resume = 1)
);
-- Columns named on both sides: a column added to runs by an earlier
-- migration and missing here fails this statement instead of shifting data.
INSERT INTO runs_v8 (id, sweep_id, name, spec_json, params_json, command, state, attempt,
                     max_attempts, priority, gpus, gpu_mem_mb, cpus, labels_json, timeout_s,
                     worker_id, lease_expires_at, failure_reason, failure_detail, exit_code,
                     created_at, started_at, finished_at, peak_gpu_mem_mb, gpu_mem_source,
                     reported_at, preemptions, resume)
SELECT id, sweep_id, name, spec_json, params_json, command, state, attempt,
       max_attempts, priority, gpus, gpu_mem_mb, cpus, labels_json, timeout_s,
       worker_id, lease_expires_at, failure_reason, failure_detail, exit_code,
       created_at, started_at, finished_at, peak_gpu_mem_mb, gpu_mem_source,
       reported_at, preemptions, resume
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v8 RENAME TO runs;
CREATE INDEX runs_by_state ON runs(state, priority DESC, id);
CREATE INDEX runs_by_sweep ON runs(sweep_id);
PRAGMA legacy_alter_table = OFF;

-- One row per rung decision: run `run_id` of sweep `sweep_id` reached rung
-- `rung` (0-based) of its bracket at `step` (the rung's step; the value is
-- the first point at or past it, reported at `reported_step`). values_json is
-- the array of its objective values (null: NaN, or a failed eval, ranked
-- worst); cutoff_json what it was compared with (the value of the last run
-- kept at the rung; an array for several objectives); decision 'continue'
-- or 'stop'. The primary key makes a decision final: a re-sent metric batch
-- or a coordinator restart finds it and decides nothing again.
CREATE TABLE search_rungs (
  sweep_id      INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
  run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  bracket       INTEGER NOT NULL CHECK (bracket >= 0),
  rung          INTEGER NOT NULL CHECK (rung >= 0),
  step          INTEGER NOT NULL,
  reported_step INTEGER NOT NULL,
  values_json   TEXT NOT NULL,
  cutoff_json   TEXT NOT NULL DEFAULT 'null',
  decision      TEXT NOT NULL CHECK (decision = 'continue' OR decision = 'stop'),
  at            REAL NOT NULL,
  PRIMARY KEY (run_id, bracket, rung)
);
CREATE INDEX search_rungs_by_sweep ON search_rungs(sweep_id, bracket, rung);

-- One row per proposed sample of a sampled sweep (sampler "tpe", or
-- "random" with a `samples` budget): written in the transaction that inserts
-- its run, so a sample index is never proposed twice, even across restarts.
CREATE TABLE search_samples (
  sweep_id     INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
  sample_index INTEGER NOT NULL CHECK (sample_index >= 0),
  params_json  TEXT NOT NULL,
  run_id       INTEGER NOT NULL UNIQUE REFERENCES runs(id) ON DELETE CASCADE,
  at           REAL NOT NULL,
  PRIMARY KEY (sweep_id, sample_index)
);

-- Each objective's value for each run of a sweep that names objectives
-- (`objectives`, or the `search` metric and mode): the run's final point of
-- that metric, else its latest eval result of that key (suite/metric[,filter])
-- on any of its checkpoints. cost is the value to minimise (max flips sign).
CREATE VIEW sweep_objective_values AS
SELECT r.sweep_id, r.id AS run_id, CAST(o.key AS INTEGER) AS objective,
       json_extract(o.value, '$.metric') AS metric,
       coalesce(json_extract(o.value, '$.mode'), 'min') AS mode,
       coalesce(
         (SELECT s.final FROM run_metric_summary s
           WHERE s.run_id = r.id AND s.metric = json_extract(o.value, '$.metric')),
         (SELECT e.value FROM eval_summary e
           WHERE e.producer_run_id = r.id
             AND e.suite || '/' || e.metric ||
                 CASE WHEN e.filter = 'none' THEN '' ELSE ',' || e.filter END
                 = json_extract(o.value, '$.metric')
           ORDER BY e.checkpoint_step DESC, e.eval_id DESC LIMIT 1)) AS value
FROM runs r
JOIN sweeps sw ON sw.id = r.sweep_id,
     json_each(coalesce(json_extract(sw.spec_json, '$.objectives'),
                        CASE WHEN json_extract(sw.spec_json, '$.search.metric') IS NOT NULL
                             THEN json_array(json_object(
                                    'metric', json_extract(sw.spec_json, '$.search.metric'),
                                    'mode', coalesce(json_extract(sw.spec_json, '$.search.mode'),
                                                     'min'))) END)) o;

-- The non-dominated runs of each sweep: succeeded runs with a value for
-- every objective that no other such run matches or beats on every
-- objective while beating on one. objectives_json maps metric -> value.
CREATE VIEW sweep_pareto AS
WITH v AS (
  SELECT o.sweep_id, o.run_id, o.objective, o.metric, o.value,
         CASE WHEN o.mode = 'max' THEN -o.value ELSE o.value END AS cost
  FROM sweep_objective_values o JOIN runs r ON r.id = o.run_id
  WHERE r.state = 'succeeded'
),
cand AS (
  SELECT sweep_id, run_id FROM v GROUP BY sweep_id, run_id HAVING count(cost) = count(*)
)
SELECT s.name AS sweep, c.run_id, r.name, r.params_json,
       (SELECT json_group_object(v.metric, v.value) FROM v WHERE v.run_id = c.run_id)
         AS objectives_json
FROM cand c
JOIN runs r ON r.id = c.run_id
JOIN sweeps s ON s.id = c.sweep_id
WHERE NOT EXISTS (
  SELECT 1 FROM cand d
  WHERE d.sweep_id = c.sweep_id AND d.run_id != c.run_id
    AND NOT EXISTS (SELECT 1 FROM v a JOIN v b ON b.objective = a.objective AND b.run_id = c.run_id
                     WHERE a.run_id = d.run_id AND a.cost > b.cost)
    AND EXISTS (SELECT 1 FROM v a JOIN v b ON b.objective = a.objective AND b.run_id = c.run_id
                 WHERE a.run_id = d.run_id AND a.cost < b.cost));
