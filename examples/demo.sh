#!/usr/bin/env bash
# The main job. Today: a smoke run through the results database:
# create a fresh database, record a run that reports metrics through the
# run metric protocol, and read them back with read-only SQL.
set -euo pipefail
assay="${1:-assay}"
work="${ASSAY_DEMO_DIR:-$(mktemp -d /tmp/assay-demo.XXXXXX)}"
db="$work/results.db"
mkdir -p "$work"
echo "== assay demo: working in $work"

echo "== 1/3 create the results database"
"$assay" db init --db "$db"

echo "== 2/3 record a run that reports loss and accuracy for 5 steps"
"$assay" record --db "$db" --name smoke -- sh -c '
  for step in 1 2 3 4 5; do
    loss=$(awk -v s=$step "BEGIN { printf \"%.4f\", 2.0 / s }")
    acc=$(awk -v s=$step "BEGIN { printf \"%.4f\", 1 - 0.5 / s }")
    echo "{\"step\": $step, \"metrics\": {\"loss\": $loss, \"accuracy\": $acc}}" >&"$ASSAY_METRICS_FD"
  done'

echo "== 3/3 query the results"
"$assay" query --db "$db" "SELECT run_id, metric, points, final, min, max FROM run_metric_summary ORDER BY metric"
"$assay" query --db "$db" "SELECT run_id, name, state, loss_final, accuracy_max FROM runs_wide"
echo "== done: the database is $db"
