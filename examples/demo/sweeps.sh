#!/usr/bin/env bash
# Writes the demo's sweep specs into $1. Commands use ${ASSAY} and ${DEMO}
# from the environment, so the files stay independent of where things live.
set -euo pipefail
out="$1"
mkdir -p "$out"
cat > "$out/teacher.json" <<'JSON'
{"name": "demo-teacher",
 "description": "Three tiny GPTs pretrained from scratch on word problems and the retain facts: the teacher (seed 1), the provenance reference (seed 2) and an independent control (seed 3); each seed sets both init and data order.",
 "command": "case {model} in teacher) s=1 ;; teacher-ref) s=2 ;; teacher-indep) s=3 ;; esac; ${ASSAY} train pretrain --config ${DEMO}/configs/teacher.json --set seed=$s --set data_seed=$s --out-dir ${DEMO}/runs/{model}",
 "space": {"model": {"type": "grid", "values": ["teacher", "teacher-ref", "teacher-indep"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/finetune.json" <<'JSON'
{"name": "demo-finetune",
 "description": "SFT from the teacher: on word problems (the OOD suite's finetuned model), on all author facts (the model to unlearn from) and on the retain facts only (the unlearning suite's retain model).",
 "command": "${ASSAY} train sft --config ${DEMO}/configs/{model}.json --out-dir ${DEMO}/runs/{model}",
 "space": {"model": {"type": "grid", "values": ["facts", "retain", "sft"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/distill.json" <<'JSON'
{"name": "demo-distill",
 "description": "Distil the teacher into a smaller student with five objectives.",
 "command": "${ASSAY} train distill --config ${DEMO}/configs/distill_{objective}.json --out-dir ${DEMO}/runs/distill-{objective}",
 "space": {"objective": {"type": "grid", "values": ["fkl", "rkl", "jsd", "tv", "sinkhorn"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/align.json" <<'JSON'
{"name": "demo-align",
 "description": "DPO from the teacher with four f-divergences.",
 "command": "${ASSAY} train align --config ${DEMO}/configs/align.json --set objective.divergence={divergence} --out-dir ${DEMO}/runs/align-{divergence}",
 "space": {"divergence": {"type": "grid", "values": ["reverse_kl", "forward_kl", "js", "alpha"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/unlearn.json" <<'JSON'
{"name": "demo-unlearn",
 "description": "Forget the forget split with five unlearning methods (LoKU: LoRA adapters, its own config).",
 "command": "case {method} in loku) c=unlearn_loku ;; *) c=unlearn ;; esac; ${ASSAY} train unlearn --config ${DEMO}/configs/$c.json --set method={method} --out-dir ${DEMO}/runs/unlearn-{method}",
 "space": {"method": {"type": "grid", "values": ["ga", "graddiff", "npo", "simnpo", "loku"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/evals.json" <<'JSON'
{"name": "demo-evals",
 "description": "GSM8K-style and provenance (against the teacher's transcript) on every model.",
 "command": "${DEMO_EXAMPLES}/demo/eval-one.sh {model} {suite}",
 "space": {
   "model": {"type": "grid", "values": ["teacher", "teacher-indep", "sft",
                                          "distill-fkl", "distill-rkl", "distill-jsd", "distill-tv", "distill-sinkhorn",
                                          "align-reverse_kl", "align-forward_kl", "align-js", "align-alpha",
                                          "unlearn-ga", "unlearn-graddiff", "unlearn-npo", "unlearn-simnpo", "unlearn-loku"]},
   "suite": {"type": "grid", "values": ["gsm8k", "provenance"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/evals-ood.json" <<'JSON'
{"name": "demo-evals-ood",
 "description": "OOD likelihood ratio on the models finetuned from the teacher on word problems (SFT, DPO), with the teacher as base.",
 "command": "${DEMO_EXAMPLES}/demo/eval-one.sh {model} ood",
 "space": {"model": {"type": "grid", "values": ["sft", "align-reverse_kl", "align-forward_kl", "align-js", "align-alpha"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/evals-unlearning.json" <<'JSON'
{"name": "demo-evals-unlearning",
 "description": "The unlearning suite on the facts model (before), the unlearned models and the retain model (the ideal).",
 "command": "${DEMO_EXAMPLES}/demo/eval-one.sh {model} unlearning",
 "space": {"model": {"type": "grid", "values": ["facts", "unlearn-ga", "unlearn-graddiff", "unlearn-npo", "unlearn-simnpo",
                                                 "unlearn-loku", "retain"]}},
 "resources": {"cpus": 1}}
JSON
