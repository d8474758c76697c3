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
DEMO_EXAMPLES="$here"
export ASSAY DEMO DEMO_EXAMPLES
db="$DEMO/assay.db"
mkdir -p "$DEMO/configs" "$DEMO/data"
cd "$DEMO"
t0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }

step "1/7 generate data (GSM8K-style problems, preference pairs, unlearning splits, OOD text)"
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

step "2/7 pretrain the teacher"
local_run teacher
step "3/7 distillation sweep: forward KL, reverse KL, JSD(0.5), TV, Sinkhorn"
local_run distill
step "4/7 alignment sweep: DPO with reverse KL, forward KL, JS, alpha=0.5"
local_run align
step "5/7 unlearning sweep: memorise facts, then GA, GradDiff, NPO, SimNPO"
local_run facts
local_run unlearn

step "6/7 evaluate every final checkpoint: GSM8K-style, OOD likelihood ratio, provenance, unlearning"
local_run evals
local_run evals-unlearning

step "7/7 results"
sql="SELECT r.name AS run,
  coalesce(json_extract(r.params_json, '\$.objective'), json_extract(r.params_json, '\$.divergence'),
           json_extract(r.params_json, '\$.method')) AS variant,
  round(w.loss_final, 3) AS loss,
  round(max(CASE WHEN e.suite = 'gsm8k' AND e.filter = 'flexible-extract' THEN e.value END), 3) AS gsm8k_em,
  round(max(CASE WHEN e.suite = 'ood' AND e.metric = 'nlr_auroc' THEN e.value END), 3) AS ood_nlr_auroc,
  round(max(CASE WHEN e.suite = 'provenance' AND e.metric = 'spearman_rho' THEN e.value END), 3) AS prov_rho,
  max(CASE WHEN e.suite = 'provenance' AND e.metric = 'p_perm' THEN e.value END) AS prov_p,
  round(max(CASE WHEN e.suite = 'unlearning' AND e.metric = 'nll' AND e.filter = 'forget' THEN e.value END), 3) AS forget_nll,
  round(max(CASE WHEN e.suite = 'unlearning' AND e.metric = 'mink_auc' THEN e.value END), 3) AS mia_auc
FROM eval_summary e JOIN runs r ON r.id = e.producer_run_id JOIN runs_wide w ON w.run_id = r.id
GROUP BY r.id ORDER BY r.id"
"$ASSAY" query --db "$db" "$sql"
echo
echo "Rerun this table with:"
echo "  $ASSAY query --db $db \"$(echo "$sql" | tr -s ' \n' ' ')\""
echo "== done in $(( $(date +%s) - t0 ))s; database: $db"
