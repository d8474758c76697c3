#!/usr/bin/env bash
# Unlearning at matched forgetting (NPO, Zhang et al. 2024; SimNPO, Fan et al.
# 2024; LoKU, Cha et al. 2025; the TOFU protocol, Maini et al. 2024): at the
# same amount of forgetting, NPO, SimNPO and LoKU keep more of the model's
# utility (retain NLL) than gradient ascent (GA) and GradDiff, and get closer
# to a model that never saw the forget set (forget quality, membership
# inference).
#
# TOFU's setup at toy scale: a base pretrained on word problems only (no author
# facts; examples/train/teacher.json with its data narrowed), then finetuned on
# all facts (forget + retain: examples/train/facts_sft.json, the model to
# unlearn from) and, separately, on the retain facts only (retain_sft.json,
# TOFU's retain model, the ideal unlearned model). Each method then runs for 60
# steps from the facts model with its shipped settings (unlearn.json: lr 1e-4;
# unlearn_loku.json: LoRA r 8, lr 1e-3), with a checkpoint every 3 steps, and
# every checkpoint gets the unlearning suite (forget quality and PrivLeak
# against the retain model). Matching: per run, the checkpoint whose forget NLL
# is closest to the retain model's forget NLL (the forgetting TOFU asks for).
# Two seeds (data order; LoKU: also the adapters' init).
#
# Usage: examples/papers/unlearning.sh [path/to/assay]   (about 2-3 minutes on 2 cores)
PAPER=unlearning
source "$(dirname "$0")/lib.sh"

step "data: word problems for the base, author facts (forget / retain / holdout, perturbed answers)"
"$ASSAY" data gsm8k --n 400 --difficulty 1 --seed 1 --out data/gsm_train.jsonl
"$ASSAY" data unlearn --authors 40 --seed 4 --out-dir data/unlearn

config teacher base
sed -i "s#\"train\": \[[^]]*\]#\"train\": [\"$W/data/gsm_train.jsonl\"]#" configs/base.json
grep -q "\"train\": \[\"$W/data/gsm_train.jsonl\"\]" configs/base.json || { echo "unlearning.sh: could not set the base's data" >&2; exit 1; }
for f in facts_sft retain_sft unlearn unlearn_loku; do
  config "$f"
  sed -i -e "s#$W/runs/teacher/final#$W/runs/base/final#" -e "s#$W/runs/facts/final#$W/runs/facts_sft/final#" "configs/$f.json"
done

u="$W/data/unlearn"
suite_args="\"forget\": \"$u/forget.jsonl\", \"retain\": \"$u/retain.jsonl\", \"holdout\": \"$u/holdout.jsonl\",
          \"perturbed\": \"$u/perturbed.jsonl\", \"retain_model\": \"$W/runs/retain_sft/final\", \"threads\": 1"
cat > sweeps/base.json <<'JSON'
{"name": "unl-base",
 "description": "The base: word problems only, no author facts.",
 "command": "${ASSAY} train pretrain --config ${W}/configs/base.json --out-dir ${W}/runs/base",
 "resources": {"cpus": 1}}
JSON
cat > sweeps/finetune.json <<JSON
{"name": "unl-finetune",
 "description": "The base finetuned on all facts (to unlearn from) and on the retain facts only (the retain model).",
 "command": "\${ASSAY} train sft --config \${W}/configs/{model}.json --out-dir \${W}/runs/{model}",
 "space": {"model": {"type": "grid", "values": ["retain_sft", "facts_sft"]}},
 "resources": {"cpus": 1},
 "evals": [{"suite": "unlearning", "on": "final", "args": {$suite_args}}]}
JSON
cat > sweeps/unlearn.json <<JSON
{"name": "unl-unlearn",
 "description": "Five unlearning methods from the facts model, the unlearning suite on every checkpoint.",
 "command": "case {method} in loku) c=unlearn_loku ;; *) c=unlearn ;; esac; \${ASSAY} train unlearn --config \${W}/configs/\$c.json --set method={method} --set seed={seed} --set steps=60 --set checkpoint_every=3 --out-dir \${W}/runs/{method}-{seed}",
 "space": {"method": {"type": "grid", "values": ["ga", "graddiff", "npo", "simnpo", "loku"]}},
 "seeds": [1, 2],
 "resources": {"cpus": 1},
 "evals": [{"suite": "unlearning", "on": "every", "args": {$suite_args}}]}
JSON

step "train: the base (word problems only)"
local_run base
step "train: facts model and retain model, each evaluated"
local_run finetune
step "unlearn: GA, GradDiff, NPO, SimNPO, LoKU x 2 seeds, 60 steps, every 3rd step evaluated"
local_run unlearn

step "results: each method at the checkpoint whose forget NLL is closest to the retain model's"
sql="WITH ck AS (
  SELECT r.name, json_extract(r.params_json, '\$.method') AS method, json_extract(r.params_json, '\$.model') AS model,
         json_extract(r.params_json, '\$.seed') AS seed, s.checkpoint_step AS step,
         max(CASE WHEN s.metric = 'nll' AND s.filter = 'forget' THEN s.value END) AS forget_nll,
         max(CASE WHEN s.metric = 'nll' AND s.filter = 'retain' THEN s.value END) AS retain_nll,
         max(CASE WHEN s.metric = 'nll' AND s.filter = 'holdout' THEN s.value END) AS holdout_nll,
         max(CASE WHEN s.metric = 'forget_quality' THEN s.value END) AS fq,
         max(CASE WHEN s.metric = 'mink_auc' THEN s.value END) AS mia
  FROM eval_summary s JOIN runs r ON r.id = s.producer_run_id
  WHERE s.suite = 'unlearning' GROUP BY s.producer_run_id, s.checkpoint_hash),
target AS (SELECT forget_nll AS t FROM ck WHERE model = 'retain_sft'),
picked AS (
  SELECT ck.*, row_number() OVER (PARTITION BY name ORDER BY abs(forget_nll - t), step) AS rk
  FROM ck, target WHERE method IS NOT NULL),
rows AS (
  SELECT 0 AS o, 'before: facts model' AS model, 1 AS k, '' AS steps, forget_nll, retain_nll, holdout_nll, fq, mia FROM ck WHERE model = 'facts_sft'
  UNION ALL
  SELECT 1, method, count(*), group_concat(step, ' '), avg(forget_nll), avg(retain_nll), avg(holdout_nll), avg(fq), avg(mia)
  FROM picked WHERE rk = 1 GROUP BY method
  UNION ALL
  SELECT 2, 'ideal: retain model', 1, '', forget_nll, retain_nll, holdout_nll, fq, mia FROM ck WHERE model = 'retain_sft'),
sd AS (
  SELECT method, group_concat(printf('%.3f', retain_nll), ' ') AS retain_per_seed,
         group_concat(printf('%.2g', fq), ' ') AS fq_per_seed, group_concat(printf('%.2f', mia), ' ') AS mia_per_seed
  FROM (SELECT * FROM picked WHERE rk = 1 ORDER BY seed) GROUP BY method)
SELECT rows.model AS method, k AS seeds, steps AS matched_steps, printf('%.3f', forget_nll) AS forget_nll,
       printf('%.3f', retain_nll) AS retain_nll, printf('%.3f', holdout_nll) AS holdout_nll,
       printf('%.3g', fq) AS forget_quality, printf('%.3f', mia) AS mia_auc,
       coalesce(retain_per_seed, '') AS retain_nll_per_seed, coalesce(fq_per_seed, '') AS fq_per_seed,
       coalesce(mia_per_seed, '') AS mia_per_seed
FROM rows LEFT JOIN sd ON sd.method = rows.model
ORDER BY o, CASE rows.model WHEN 'ga' THEN 1 WHEN 'graddiff' THEN 2 WHEN 'npo' THEN 3 WHEN 'simnpo' THEN 4 ELSE 5 END"
table "$sql"
done_msg
