-- 0003: eval hooks (coordinator).
-- A sweep's `evals` hooks turn checkpoints into dependent eval runs. One row
-- per eval run created that way; the primary key makes creation idempotent:
-- a re-sent artifact report, a repeated 'finished' or a coordinator restart
-- finds the row and creates nothing. The row is written in the same
-- transaction as the eval run and the change that triggered it.
CREATE TABLE eval_hook_runs (
  producer_run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  checkpoint_hash TEXT NOT NULL,          -- artifacts.content_hash evaluated
  suite           TEXT NOT NULL,          -- the hook's suite, as written in the spec
  eval_run_id     INTEGER NOT NULL UNIQUE REFERENCES runs(id) ON DELETE CASCADE,
  step            INTEGER,                -- the checkpoint's step, if reported
  seed            INTEGER NOT NULL DEFAULT 0,  -- eval seed (the hook's args.seed)
  created_at      REAL NOT NULL,
  PRIMARY KEY (producer_run_id, checkpoint_hash, suite)
);
