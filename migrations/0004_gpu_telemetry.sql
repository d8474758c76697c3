-- 0004: GPU telemetry measured by workers through NVML.

-- Peak device memory of a run's latest attempt, in MiB, and how it was
-- measured: 'process' sums the memory NVML attributes to the run's own
-- processes; 'device' is the used memory of the GPUs the run held alone
-- (used when NVML cannot see the run's processes, e.g. inside a container).
-- NULL when the run held no GPU or the worker had no NVML.
-- (Comparisons, not IN lists, in CHECKs: SQLite builds a temporary table for
-- each IN list it evaluates, on every write to the row.)
ALTER TABLE runs ADD COLUMN peak_gpu_mem_mb INTEGER CHECK (peak_gpu_mem_mb >= 0);
ALTER TABLE runs ADD COLUMN gpu_mem_source TEXT
  CHECK (gpu_mem_source = 'process' OR gpu_mem_source = 'device');

-- Live state of each worker GPU (utilization, free memory), from heartbeats,
-- is kept in workers.gpus_json; this table keeps a sampled history of it.
CREATE TABLE gpu_samples (
  worker_id   TEXT NOT NULL,
  gpu_index   INTEGER NOT NULL,
  at          REAL NOT NULL,        -- unix seconds
  util_pct    INTEGER,              -- 0..100, NULL when NVML does not say
  mem_used_mb INTEGER NOT NULL,
  mem_total_mb INTEGER NOT NULL,
  PRIMARY KEY (worker_id, gpu_index, at)
) WITHOUT ROWID;
