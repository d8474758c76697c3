#!/usr/bin/env bash
# eval-one.sh MODEL SUITE: evaluate the final checkpoint of ${DEMO}/runs/MODEL
# with one suite, storing rows in ${DEMO}/assay.db. The demo's eval sweeps run
# this once per (model, suite); the limits keep the demo within minutes.
set -euo pipefail
model="$1" suite="$2"
ck="$DEMO/runs/$model/final"
# One thread each: the eval sweeps run one eval per core.
common=(--model-path "$ck" --db "$DEMO/assay.db" --threads 1)
case "$suite" in
  # 0-shot with 16 new tokens: every prompt of the first 10 problems (at most
  # 491 byte tokens with BOS) fits the models' 512 positions untruncated.
  gsm8k)      exec "$ASSAY" eval gsm8k "${common[@]}" --limit 10 --num-fewshot 0 --max-gen-toks 16 ;;
  # Only for models finetuned from the teacher (sft, align-*): the base is the
  # model the finetune started from. ID texts are fresh word problems.
  ood)
    case "$model" in sft|align-*) ;; *) echo "eval-one.sh: $model was not finetuned from the teacher; no OOD base" >&2; exit 2 ;; esac
    exec "$ASSAY" eval ood "${common[@]}" --base "$DEMO/runs/teacher/final" \
      --id "$DEMO/data/gsm_test.jsonl" --ood "$DEMO/data/ood.jsonl" --limit 50 ;;
  # Is MODEL derived from the teacher? Its NLLs against the teacher's training
  # order, relative to teacher-ref (trained independently: its own init and
  # data order); the data files come from the teacher's train_config.json.
  provenance) exec "$ASSAY" eval provenance "${common[@]}" --reference "$DEMO/runs/teacher-ref/final" \
                --transcript "$DEMO/runs/teacher/transcript.jsonl" ;;
  unlearning) exec "$ASSAY" eval unlearning "${common[@]}" --forget "$DEMO/data/unlearn/forget.jsonl" \
                --retain "$DEMO/data/unlearn/retain.jsonl" --holdout "$DEMO/data/unlearn/holdout.jsonl" \
                --perturbed "$DEMO/data/unlearn/perturbed.jsonl" --retain-model "$DEMO/runs/retain/final" ;;
  *) echo "eval-one.sh: unknown suite '$suite'" >&2; exit 2 ;;
esac
