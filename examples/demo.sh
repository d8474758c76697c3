#!/usr/bin/env bash
# The main job: generate data, pretrain a tiny teacher, then run the
# distillation, alignment and unlearning sweeps through `assay local`, all
# recorded in one SQLite database, and print a results table with its SQL.
#
# Usage: examples/demo.sh [path/to/assay]   (ASSAY_DEMO_DIR picks the work dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ASSAY="$(realpath "${1:-$(command -v assay)}")"
DEMO="$(realpath -m "${ASSAY_DEMO_DIR:-$PWD/assay-demo}")"
export ASSAY DEMO
db="$DEMO/assay.db"
mkdir -p "$DEMO/configs" "$DEMO/data"
cd "$DEMO"
t0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }

step "1/6 generate data (GSM8K-style problems, preference pairs, unlearning splits, OOD text)"
"$ASSAY" data gsm8k --n 400 --difficulty 1 --seed 1 --out data/gsm_train.jsonl
"$ASSAY" data prefs --n 200 --difficulty 1 --seed 3 --out data/prefs.jsonl
"$ASSAY" data unlearn --authors 40 --seed 4 --out-dir data/unlearn
"$ASSAY" data ood --n 100 --kind weather --seed 5 --out data/ood.jsonl

# Recipe configs: the shipped examples with paths pointing into $DEMO.
for f in teacher facts_sft distill distill_sinkhorn align unlearn; do
  sed "s#\"demo/#\"$DEMO/#g" "$here/train/$f.json" > "configs/$f.json"
done
for o in fkl rkl jsd tv; do
  sed "s#\"type\": \"fkl\"#\"type\": \"$o\"#" configs/distill.json > "configs/distill_$o.json"
done
"$here/demo/sweeps.sh" sweeps

local_run() { "$ASSAY" local "sweeps/$1.json" --db "$db" --work-dir "$DEMO/.assay-local"; }

step "2/6 pretrain the teacher"
local_run teacher
step "3/6 distillation sweep: forward KL, reverse KL, JSD(0.5), TV, Sinkhorn"
local_run distill
step "4/6 alignment sweep: DPO with reverse KL, forward KL, JS, alpha=0.5"
local_run align
step "5/6 unlearning sweep: memorise facts, then GA, GradDiff, NPO, SimNPO"
local_run facts
local_run unlearn

step "6/6 results"
sql="SELECT sweep, name, state, duration_s,
  coalesce(json_extract(params_json, '\$.objective'), json_extract(params_json, '\$.divergence'),
           json_extract(params_json, '\$.method'), '') AS variant,
  loss_final, kl_to_teacher_final, accuracy_final, margin_final, forget_loss_final, retain_loss_final
FROM runs_wide ORDER BY run_id"
"$ASSAY" query --db "$db" "$sql"
echo
echo "Rerun this table with:"
echo "  $ASSAY query --db $db \"$(echo "$sql" | tr -s ' \n' ' ')\""
echo "== done in $(( $(date +%s) - t0 ))s; database: $db"
