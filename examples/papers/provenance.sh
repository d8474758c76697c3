#!/usr/bin/env bash
# Palimpsestic membership inference (Kuditipudi et al. 2025), query setting:
# a model derived from Alice's model keeps the imprint of Alice's training
# order (examples seen late have lower NLL), so Spearman(order, NLL_test -
# NLL_ref) is significantly negative; for a model trained independently of
# that order the p-value is uniform on [0, 1].
#
# Five "Alice" models are pretrained from scratch (examples/train/teacher.json:
# word problems + author facts, 300 steps) with seeds 1, 3, 4, 5, 6 (init and
# data order), and one reference with seed 2. Derived from each: an SFT on
# fresh word problems (examples/train/sft.json); from Alice 1 also a DPO run
# (align.json) and a distilled student (distill.json, random init, learns from
# Alice 1's logits). Every model is tested against every Alice's transcript,
# with the whole transcript and with its last 200 examples (--window 200):
# pairs whose model descends from the transcript's run are "derived" (12 per
# window), all the others "independent" (48 per window: 20 pretrained models,
# 20 SFT models and 8 DPO / distilled models against another Alice's order).
#
# Usage: examples/papers/provenance.sh [path/to/assay]   (about 2-3 minutes on 2 cores)
PAPER=provenance
source "$(dirname "$0")/lib.sh"

step "data: word problems, author facts, fresh problems for the finetunes, preference pairs"
"$ASSAY" data gsm8k --n 400 --difficulty 1 --seed 1 --out data/gsm_train.jsonl
"$ASSAY" data unlearn --authors 40 --seed 4 --out-dir data/unlearn > /dev/null
"$ASSAY" data gsm8k --n 200 --difficulty 1 --seed 7 --out data/gsm_fresh.jsonl
"$ASSAY" data prefs --n 200 --difficulty 1 --seed 3 --out data/prefs.jsonl

alices=(1 3 4 5 6)
config teacher
config sft
config align
config distill
for a in "${alices[@]}"; do
  sed -e "s#$W/runs/teacher/final#$W/runs/pretrain-$a/final#" \
      -e "s#$W/data/gsm_train.jsonl#$W/data/gsm_fresh.jsonl#" configs/sft.json > "configs/sft-$a.json"
done
sed "s#$W/runs/teacher/final#$W/runs/pretrain-1/final#" configs/align.json > configs/align-1.json
sed "s#$W/runs/teacher/final#$W/runs/pretrain-1/final#" configs/distill.json > configs/distill-1.json

cat > sweeps/pretrain.json <<'JSON'
{"name": "prov-pretrain",
 "description": "Five Alices (seeds 1, 3-6) and the reference (seed 2), each from scratch with its own init and data order.",
 "command": "${ASSAY} train pretrain --config ${W}/configs/teacher.json --set seed={s} --set data_seed={s} --out-dir ${W}/runs/pretrain-{s}",
 "space": {"s": {"type": "grid", "values": [1, 2, 3, 4, 5, 6]}},
 "resources": {"cpus": 1}}
JSON
cat > sweeps/derive.json <<'JSON'
{"name": "prov-derive",
 "description": "Models derived from the Alices: SFT on fresh problems from each, DPO and a distilled student from Alice 1.",
 "command": "case {job} in sft-*) r=sft ;; align-*) r=align ;; distill-*) r=distill ;; esac; ${ASSAY} train $r --config ${W}/configs/{job}.json --out-dir ${W}/runs/{job}",
 "space": {"job": {"type": "grid", "values": ["sft-1", "sft-3", "sft-4", "sft-5", "sft-6", "align-1", "distill-1"]}},
 "resources": {"cpus": 1}}
JSON
cat > sweeps/evals.json <<'JSON'
{"name": "prov-evals",
 "description": "Every model against every Alice's transcript (reference: pretrain-2), whole transcript and its last 200 examples.",
 "command": "${ASSAY} eval provenance --model-path ${W}/runs/{model}/final --reference ${W}/runs/pretrain-2/final --transcript ${W}/runs/pretrain-{alice}/transcript.jsonl --window {window} --threads 1 --db ${W}/assay.db",
 "space": {"model": {"type": "grid", "values": ["pretrain-1", "pretrain-3", "pretrain-4", "pretrain-5", "pretrain-6",
                                                "sft-1", "sft-3", "sft-4", "sft-5", "sft-6", "align-1", "distill-1"]},
           "alice": {"type": "grid", "values": [1, 3, 4, 5, 6]},
           "window": {"type": "grid", "values": [0, 200]}},
 "resources": {"cpus": 1}}
JSON

step "train: 6 models from scratch (5 Alices + the reference)"
local_run pretrain
step "train: derived models (5 SFT, 1 DPO, 1 distilled student)"
local_run derive
step "evaluate: 12 models x 5 transcripts x 2 windows"
local_run evals

step "results: p-value (one-sided, rho < 0) of each (model, transcript) pair"
sql="WITH p AS (
  SELECT json_extract(er.params_json, '\$.model') AS model,
         json_extract(er.params_json, '\$.alice') AS alice,
         json_extract(er.params_json, '\$.window') AS win,
         max(CASE WHEN e.metric = 'p_value' THEN e.value END) AS p,
         max(CASE WHEN e.metric = 'spearman_rho' THEN e.value END) AS rho,
         max(e.n) AS n
  FROM eval_results e JOIN runs er ON er.id = e.run_id
  WHERE e.suite = 'provenance' AND e.metric IN ('p_value', 'spearman_rho')
  GROUP BY e.run_id),
r AS (
  SELECT CASE WHEN model = 'pretrain-' || alice THEN 'derived: the transcript''s own model'
              WHEN model LIKE '%-' || alice THEN 'derived: ' || substr(model, 1, instr(model, '-') - 1) || ' of it'
              ELSE 'independent: ' || substr(model, 1, instr(model, '-') - 1) END AS relation,
         * FROM p)
SELECT relation, win AS window, count(*) AS pairs, max(n) AS n_examples,
       round(avg(rho), 3) AS mean_rho,
       printf('%.1e', min(p)) AS min_p, printf('%.1e', max(p)) AS max_p,
       round(avg(p), 3) AS mean_p,
       sum(p < 0.05) AS 'p<0.05', sum(p < 0.5) AS 'p<0.5',
       group_concat(printf('%.2g', p), ' ') AS all_p
FROM (SELECT * FROM r ORDER BY p) GROUP BY relation, win ORDER BY relation, win"
table "$sql"
done_msg
