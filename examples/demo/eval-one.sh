#!/usr/bin/env bash
# eval-one.sh MODEL SUITE: evaluate the final checkpoint of ${DEMO}/runs/MODEL
# with one suite, storing rows in ${DEMO}/assay.db. The demo's eval sweeps run
# this once per (model, suite); the limits keep the demo within minutes.
set -euo pipefail
model="$1" suite="$2"
ck="$DEMO/runs/$model/final"
common=(--model-path "$ck" --db "$DEMO/assay.db")
case "$suite" in
  # 0-shot with 16 new tokens: every prompt of the first 10 problems (at most
  # 491 byte tokens with BOS) fits the models' 512 positions untruncated.
  gsm8k)      exec "$ASSAY" eval gsm8k "${common[@]}" --limit 10 --num-fewshot 0 --max-gen-toks 16 ;;
  ood)        exec "$ASSAY" eval ood "${common[@]}" --base "$DEMO/runs/teacher/final" \
                --id "$DEMO/data/gsm_train.jsonl" --ood "$DEMO/data/ood.jsonl" --limit 50 ;;
  provenance)
    extra=()  # unlearning runs train on two files; name them (others read train_config.json)
    case "$model" in unlearn-*) extra=(--data "$DEMO/data/unlearn/forget.jsonl" --data "$DEMO/data/unlearn/retain.jsonl") ;; esac
    exec "$ASSAY" eval provenance "${common[@]}" --reference "$DEMO/runs/teacher/final" "${extra[@]}" ;;
  unlearning) exec "$ASSAY" eval unlearning "${common[@]}" --forget "$DEMO/data/unlearn/forget.jsonl" \
                --retain "$DEMO/data/unlearn/retain.jsonl" --holdout "$DEMO/data/unlearn/holdout.jsonl" \
                --perturbed "$DEMO/data/unlearn/perturbed.jsonl" --retain-model "$DEMO/runs/teacher/final" ;;
  *) echo "eval-one.sh: unknown suite '$suite'" >&2; exit 2 ;;
esac
