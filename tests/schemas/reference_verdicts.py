"""Reference verdicts for the spec corpus, from python3-jsonschema.

Usage: reference_verdicts.py SCHEMA_DIR CORPUS_DIR
Prints one JSON object: {"<kind>/<good|bad>/<file>": true|false (valid)}.
Exit code 3 when jsonschema is not installed, so the test can skip.
"""
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    sys.exit(3)

schema_dir, corpus = sys.argv[1], sys.argv[2]
out = {}
for kind in sorted(os.listdir(corpus)):
    with open(os.path.join(schema_dir, kind + ".schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for verdict in ("good", "bad"):
        d = os.path.join(corpus, kind, verdict)
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name)) as f:
                doc = json.load(f)
            out[f"{kind}/{verdict}/{name}"] = validator.is_valid(doc)
print(json.dumps(out))
