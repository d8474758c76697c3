#!/usr/bin/env bash
# The main job: generate data, pretrain a tiny teacher (and two independent
# twins), then run the finetuning, distillation, alignment and unlearning
# sweeps through `assay local`, all recorded in one SQLite database, and print
# a results table with its SQL.
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

step "1/8 generate data (GSM8K-style problems, preference pairs, unlearning splits, OOD text)"
"$ASSAY" data gsm8k --n 400 --difficulty 1 --seed 1 --out data/gsm_train.jsonl
"$ASSAY" data gsm8k --n 50 --difficulty 1 --seed 21 --out data/gsm_test.jsonl
"$ASSAY" data prefs --n 200 --difficulty 1 --seed 3 --out data/prefs.jsonl
"$ASSAY" data unlearn --authors 40 --seed 4 --out-dir data/unlearn
"$ASSAY" data ood --n 100 --kind weather --seed 5 --out data/ood.jsonl

# Recipe configs: the shipped examples with paths pointing into $DEMO.
for f in teacher distill distill_sinkhorn align unlearn unlearn_loku sft; do
  sed "s#\"demo/#\"$DEMO/#g" "$here/train/$f.json" > "configs/$f.json"
done
sed "s#\"demo/#\"$DEMO/#g" "$here/train/facts_sft.json" > configs/facts.json
sed "s#\"demo/#\"$DEMO/#g" "$here/train/retain_sft.json" > configs/retain.json
# The teachers see the retain facts but never the forget facts, so that the
# retain model (teacher + SFT on retain only) is one that never saw them.
sed -i "s#$DEMO/data/unlearn/train.jsonl#$DEMO/data/unlearn/retain.jsonl#" configs/teacher.json
grep -q "$DEMO/data/unlearn/retain.jsonl" configs/teacher.json
for o in fkl rkl jsd tv; do
  sed "s#\"type\": \"fkl\"#\"type\": \"$o\"#" configs/distill.json > "configs/distill_$o.json"
done
"$here/demo/sweeps.sh" sweeps

local_run() { "$ASSAY" local "sweeps/$1.json" --db "$db" --work-dir "$DEMO/.assay-local"; }

step "2/8 pretrain the teacher, a provenance reference and an independent control (seeds 1, 2, 3)"
local_run teacher
step "3/8 finetune the teacher: word problems (SFT), all author facts, retain facts only"
local_run finetune
step "4/8 distillation sweep: forward KL, reverse KL, JSD(0.5), TV, Sinkhorn"
local_run distill
step "5/8 alignment sweep: DPO with reverse KL, forward KL, JS, alpha=0.5"
local_run align
step "6/8 unlearning sweep: GA, GradDiff, NPO, SimNPO, LoKU from the facts model"
local_run unlearn

step "7/8 evaluate: GSM8K-style and provenance on every model, OOD on the finetunes, unlearning"
local_run evals
local_run evals-ood
local_run evals-unlearning

step "8/8 results"
sql="WITH m AS (SELECT r.id, r.name AS run,
  coalesce(json_extract(r.params_json, '\$.objective'), json_extract(r.params_json, '\$.divergence'),
           json_extract(r.params_json, '\$.method'), json_extract(r.params_json, '\$.model')) AS variant,
  w.loss_final AS loss,
  max(CASE WHEN e.suite = 'gsm8k' AND e.filter = 'flexible-extract' THEN e.value END) AS gsm8k_em,
  max(CASE WHEN e.suite = 'ood' AND e.metric = 'nlr_auroc' THEN e.value END) AS ood_nlr_auroc,
  max(CASE WHEN e.suite = 'provenance' AND e.metric = 'spearman_rho' THEN e.value END) AS prov_rho,
  max(CASE WHEN e.suite = 'provenance' AND e.metric = 'p_value' THEN e.value END) AS prov_p,
  max(CASE WHEN e.suite = 'unlearning' AND e.metric = 'nll' AND e.filter = 'forget' THEN e.value END) AS forget_nll,
  max(CASE WHEN e.suite = 'unlearning' AND e.metric = 'nll' AND e.filter = 'retain' THEN e.value END) AS retain_nll,
  max(CASE WHEN e.suite = 'unlearning' AND e.metric = 'forget_quality' THEN e.value END) AS forget_q,
  max(CASE WHEN e.suite = 'unlearning' AND e.metric = 'mink_auc' THEN e.value END) AS mia_auc
FROM eval_summary e JOIN runs r ON r.id = e.producer_run_id JOIN runs_wide w ON w.run_id = r.id GROUP BY r.id)
SELECT run, variant, round(loss, 3) AS loss, round(gsm8k_em, 3) AS gsm8k_em, round(ood_nlr_auroc, 3) AS ood_nlr_auroc,
  round(prov_rho, 3) AS prov_rho, iif(prov_p IS NULL, NULL, printf('%.2g', prov_p)) AS prov_p,
  round(forget_nll, 3) AS forget_nll, round(retain_nll, 3) AS retain_nll,
  iif(forget_q IS NULL, NULL, printf('%.2g', forget_q)) AS forget_q, round(mia_auc, 3) AS mia_auc
FROM m ORDER BY id"
"$ASSAY" query --db "$db" "$sql"
echo
echo "Rerun this table with:"
echo "  $ASSAY query --db $db \"$(echo "$sql" | tr -s ' \n' ' ')\""
echo "== done in $(( $(date +%s) - t0 ))s; database: $db"
