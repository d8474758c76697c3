#!/usr/bin/env bash
# OOD detection with a finetuned model (Zhang et al. 2024, "Your finetuned
# large language model is already a powerful out-of-distribution detector"):
# the likelihood ratio between a model finetuned on the in-distribution (ID)
# data and the base it started from separates OOD from ID texts better than
# either model's loss alone.
#
# As in the paper the base is a general model: pretrained from scratch on
# word problems, weather reports and recipes alike (examples/train/teacher.json,
# 300 steps, its data swapped for that mix). It is then finetuned on word
# problems only (examples/train/sft.json, 50 steps). ID test texts are fresh
# word problems; the OOD sets are fresh weather reports and fresh recipes,
# none of them seen in training. Three seeds (base init + order, finetune
# order). Scores (a higher score counts as more OOD; AUROC with OOD positive):
# nlr = NLL_finetuned / NLL_base, loss = NLL_finetuned, base_loss = NLL_base.
#
# Usage: examples/papers/ood.sh [path/to/assay]   (about 1 minute on 2 cores)
PAPER=ood
source "$(dirname "$0")/lib.sh"

step "data: a general corpus for the base, word problems to finetune on, fresh test sets"
"$ASSAY" data gsm8k --n 200 --difficulty 1 --seed 31 --out data/base_gsm.jsonl
"$ASSAY" data ood --n 200 --kind weather --seed 32 --out data/base_weather.jsonl
"$ASSAY" data ood --n 200 --kind recipes --seed 33 --out data/base_recipes.jsonl
"$ASSAY" data gsm8k --n 400 --difficulty 1 --seed 1 --out data/gsm_train.jsonl
"$ASSAY" data gsm8k --n 100 --difficulty 1 --seed 21 --out data/test_id.jsonl
"$ASSAY" data ood --n 100 --kind weather --seed 22 --out data/test_weather.jsonl
"$ASSAY" data ood --n 100 --kind recipes --seed 23 --out data/test_recipes.jsonl

config teacher base
sed -i "s#\"train\": \[[^]]*\]#\"train\": [\"$W/data/base_gsm.jsonl\", \"$W/data/base_weather.jsonl\", \"$W/data/base_recipes.jsonl\"]#" configs/base.json
grep -q base_recipes configs/base.json || { echo "ood.sh: could not set the base's data" >&2; exit 1; }
config sft

cat > sweeps/base.json <<'JSON'
{"name": "ood-base",
 "description": "General base models: word problems, weather reports and recipes, from scratch.",
 "command": "${ASSAY} train pretrain --config ${W}/configs/base.json --set seed={seed} --out-dir ${W}/runs/base-{seed}",
 "seeds": [1, 2, 3],
 "resources": {"cpus": 1}}
JSON
cat > sweeps/finetune.json <<'JSON'
{"name": "ood-finetune",
 "description": "Each base finetuned on word problems (the ID data).",
 "command": "${ASSAY} train sft --config ${W}/configs/sft.json --set init=${W}/runs/base-{seed}/final --set seed={seed} --out-dir ${W}/runs/ft-{seed}",
 "seeds": [1, 2, 3],
 "resources": {"cpus": 1}}
JSON
cat > sweeps/evals.json <<'JSON'
{"name": "ood-evals",
 "description": "OOD suite: each finetuned model with its own base, ID word problems vs each OOD set.",
 "command": "${ASSAY} eval ood --model-path ${W}/runs/ft-{seed}/final --base ${W}/runs/base-{seed}/final --id ${W}/data/test_id.jsonl --ood ${W}/data/test_{ood}.jsonl --threads 1 --db ${W}/assay.db",
 "space": {"ood": {"type": "grid", "values": ["weather", "recipes"]}},
 "seeds": [1, 2, 3],
 "resources": {"cpus": 1}}
JSON

step "train: 3 general bases"
local_run base
step "train: 3 finetunes on word problems"
local_run finetune
step "evaluate: 3 seeds x 2 OOD sets"
local_run evals

step "results: AUROC (OOD positive) per OOD set, mean ± sd over seeds, and each seed's value"
sql="WITH v AS (
  SELECT json_extract(er.params_json, '\$.ood') AS ood_set, json_extract(er.params_json, '\$.seed') AS seed,
         e.metric || CASE WHEN e.metric = 'mean_loss' THEN '_' || e.filter ELSE '' END AS m, e.value
  FROM eval_results e JOIN runs er ON er.id = e.run_id
  WHERE e.suite = 'ood' AND e.metric IN ('nlr_auroc', 'loss_auroc', 'base_loss_auroc', 'mean_loss')),
s AS (SELECT ood_set, m, count(*) AS k, avg(value) AS mu,
             sqrt(max(avg(value * value) - avg(value) * avg(value), 0) * count(*) / max(count(*) - 1, 1)) AS sd,
             group_concat(printf('%.3f', value), ' ') AS per_seed
      FROM (SELECT * FROM v ORDER BY seed) GROUP BY ood_set, m)
SELECT ood_set, m AS score, k AS seeds, printf('%.3f ± %.3f', mu, sd) AS mean_sd, per_seed
FROM s ORDER BY ood_set DESC,
  CASE m WHEN 'nlr_auroc' THEN 1 WHEN 'loss_auroc' THEN 2 WHEN 'base_loss_auroc' THEN 3 ELSE 4 END, m"
table "$sql"
done_msg
