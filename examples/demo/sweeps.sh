#!/usr/bin/env bash
# Writes the demo's sweep specs into $1. Commands use ${ASSAY} and ${DEMO}
# from the environment, so the files stay independent of where things live.
set -euo pipefail
out="$1"
mkdir -p "$out"
cat > "$out/teacher.json" <<'JSON'
{"name": "demo-teacher",
 "description": "A tiny GPT pretrained on generated word problems and author facts.",
 "command": "${ASSAY} train pretrain --config ${DEMO}/configs/teacher.json --out-dir ${DEMO}/runs/teacher",
 "resources": {"cpus": 1}}
JSON
cat > "$out/facts.json" <<'JSON'
{"name": "demo-facts",
 "description": "The teacher finetuned to memorise the author facts (the model to unlearn from).",
 "command": "${ASSAY} train sft --config ${DEMO}/configs/facts_sft.json --out-dir ${DEMO}/runs/facts",
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
 "description": "Forget the forget split with four unlearning methods.",
 "command": "${ASSAY} train unlearn --config ${DEMO}/configs/unlearn.json --set method={method} --out-dir ${DEMO}/runs/unlearn-{method}",
 "space": {"method": {"type": "grid", "values": ["ga", "graddiff", "npo", "simnpo"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/evals.json" <<'JSON'
{"name": "demo-evals",
 "description": "GSM8K-style, OOD likelihood ratio and provenance on every final checkpoint.",
 "command": "${DEMO_EXAMPLES}/demo/eval-one.sh {model} {suite}",
 "space": {
   "model": {"type": "grid", "values": ["distill-fkl", "distill-rkl", "distill-jsd", "distill-tv", "distill-sinkhorn",
                                          "align-reverse_kl", "align-forward_kl", "align-js", "align-alpha",
                                          "unlearn-ga", "unlearn-graddiff", "unlearn-npo", "unlearn-simnpo"]},
   "suite": {"type": "grid", "values": ["gsm8k", "ood", "provenance"]}},
 "resources": {"cpus": 1}}
JSON
cat > "$out/evals-unlearning.json" <<'JSON'
{"name": "demo-evals-unlearning",
 "description": "The unlearning suite on the unlearned models.",
 "command": "${DEMO_EXAMPLES}/demo/eval-one.sh {model} unlearning",
 "space": {"model": {"type": "grid", "values": ["unlearn-ga", "unlearn-graddiff", "unlearn-npo", "unlearn-simnpo"]}},
 "resources": {"cpus": 1}}
JSON
