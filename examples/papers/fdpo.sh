#!/usr/bin/env bash
# f-DPO (Wang et al. 2024, "Beyond reverse KL: generalizing direct preference
# optimization with diverse divergence constraints"): DPO's reverse-KL
# constraint can be swapped for other f-divergences; going from reverse KL
# through α-divergences and JS towards forward KL trades a little alignment
# (preference accuracy) for more diversity of the generations.
#
# A policy pretrained on word problems (examples/train/teacher.json, its data
# narrowed to word problems) is the initialisation and the frozen reference;
# DPO (examples/train/align.json: sigmoid loss, beta 0.1, 60 steps, lr 1e-4)
# on 200 synthetic preference pairs with each divergence (alpha: α = 0.5),
# three seeds (data order). The preference suite scores 100 held-out pairs
# against the reference (reward accuracy and margin, likelihood displacement)
# and samples 4 answers per held-out prompt at temperature 1 (distinct-2,
# self-BLEU, predictive entropy); the reference itself is the first row.
#
# Usage: examples/papers/fdpo.sh [path/to/assay]   (about 1 minute on 2 cores)
PAPER=fdpo
source "$(dirname "$0")/lib.sh"

step "data: word problems, preference pairs for training and held out"
"$ASSAY" data gsm8k --n 400 --difficulty 1 --seed 1 --out data/gsm_train.jsonl
"$ASSAY" data prefs --n 200 --difficulty 1 --seed 3 --out data/prefs.jsonl
"$ASSAY" data prefs --n 100 --difficulty 1 --seed 13 --out data/heldout_prefs.jsonl

config teacher policy
sed -i "s#\"train\": \[[^]]*\]#\"train\": [\"$W/data/gsm_train.jsonl\"]#" configs/policy.json
grep -q "\"train\": \[\"$W/data/gsm_train.jsonl\"\]" configs/policy.json || { echo "fdpo.sh: could not set the policy's data" >&2; exit 1; }
config align
sed -i "s#$W/runs/teacher/final#$W/runs/policy/final#" configs/align.json

eval_args="\"reference\": \"$W/runs/policy/final\", \"data\": \"$W/data/heldout_prefs.jsonl\",
          \"gen_kwargs\": \"temperature=1.0,seed=1\", \"threads\": 1"
cat > sweeps/policy.json <<JSON
{"name": "fdpo-policy",
 "description": "The initial policy and DPO reference: word problems, from scratch.",
 "command": "\${ASSAY} train pretrain --config \${W}/configs/policy.json --out-dir \${W}/runs/policy",
 "resources": {"cpus": 1},
 "evals": [{"suite": "preference", "args": {$eval_args}}]}
JSON
cat > sweeps/align.json <<JSON
{"name": "fdpo-align",
 "description": "DPO with four f-divergences, three seeds each, the preference suite on each final model.",
 "command": "\${ASSAY} train align --config \${W}/configs/align.json --set objective.divergence={divergence} --set seed={seed} --out-dir \${W}/runs/{divergence}-{seed}",
 "space": {"divergence": {"type": "grid", "values": ["reverse_kl", "forward_kl", "js", "alpha"]}},
 "seeds": [1, 2, 3],
 "resources": {"cpus": 1},
 "evals": [{"suite": "preference", "args": {$eval_args}}]}
JSON

step "train: the policy / reference, and its preference eval (diversity baseline)"
local_run policy
step "align: reverse KL, forward KL, JS, alpha(0.5) x 3 seeds, each evaluated"
local_run align

step "results: held-out preference accuracy, likelihood displacement, diversity (mean ± sd over seeds)"
sql="WITH v AS (
  SELECT coalesce(json_extract(r.params_json, '\$.divergence'), 'reference (no DPO)') AS divergence,
         json_extract(r.params_json, '\$.seed') AS seed, s.producer_run_id AS run, s.metric, s.value
  FROM eval_summary s JOIN runs r ON r.id = s.producer_run_id WHERE s.suite = 'preference'),
c AS (SELECT run_id AS run, max AS clamped FROM run_metric_summary WHERE metric = 'clamped_frac'),
agg AS (
  SELECT divergence, metric, count(*) AS k, avg(value) AS mu,
         sqrt(max(avg(value * value) - avg(value) * avg(value), 0) * count(*) / max(count(*) - 1, 1)) AS sd
  FROM v GROUP BY divergence, metric)
SELECT a.divergence, a.k AS seeds,
  printf('%.3f ± %.3f', a.mu, a.sd) AS pref_acc,
  (SELECT group_concat(printf('%.2f', value), ' ') FROM (SELECT value FROM v WHERE v.divergence = a.divergence AND metric = 'reward_accuracy' ORDER BY seed)) AS acc_per_seed,
  (SELECT printf('%.3f', mu) FROM agg b WHERE b.divergence = a.divergence AND b.metric = 'reward_margin') AS margin,
  (SELECT printf('%.1f ± %.1f', mu, sd) FROM agg b WHERE b.divergence = a.divergence AND b.metric = 'chosen_logp_change') AS d_logp_chosen,
  (SELECT printf('%.1f ± %.1f', mu, sd) FROM agg b WHERE b.divergence = a.divergence AND b.metric = 'rejected_logp_change') AS d_logp_rejected,
  (SELECT printf('%.2f', mu) FROM agg b WHERE b.divergence = a.divergence AND b.metric = 'chosen_logp_decreased') AS chosen_down,
  (SELECT printf('%.3f ± %.3f', mu, sd) FROM agg b WHERE b.divergence = a.divergence AND b.metric = 'distinct_2') AS distinct_2,
  (SELECT printf('%.4f ± %.4f', mu, sd) FROM agg b WHERE b.divergence = a.divergence AND b.metric = 'self_bleu') AS self_bleu,
  (SELECT printf('%.3f ± %.3f', mu, sd) FROM agg b WHERE b.divergence = a.divergence AND b.metric = 'predictive_entropy') AS pred_entropy,
  (SELECT printf('%.2f', max(clamped)) FROM c WHERE c.run IN (SELECT run FROM v WHERE v.divergence = a.divergence)) AS max_clamped
FROM agg a WHERE a.metric = 'reward_accuracy'
ORDER BY CASE a.divergence WHEN 'reference (no DPO)' THEN 0 WHEN 'reverse_kl' THEN 1 WHEN 'alpha' THEN 2 WHEN 'js' THEN 3 ELSE 4 END"
table "$sql"
done_msg
