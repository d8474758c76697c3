# Shared by the examples/papers/*.sh scripts (sourced, not run).
#
# Each script is called as `examples/papers/NAME.sh [path/to/assay]` and works
# in ${ASSAY_PAPERS_DIR:-$PWD/assay-papers}/NAME: data/, configs/, sweeps/,
# runs/ and assay.db. Re-running resumes: finished runs are kept, evals are
# served from the database, and the table is printed again.
set -euo pipefail
papers_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
examples_dir="$(dirname "$papers_here")"
ASSAY="${1:-$(command -v assay || true)}"
[ -n "$ASSAY" ] && [ -x "$ASSAY" ] || { echo "usage: $0 path/to/assay (or put assay on PATH)" >&2; exit 2; }
ASSAY="$(realpath "$ASSAY")"
W="$(realpath -m "${ASSAY_PAPERS_DIR:-$PWD/assay-papers}/$PAPER")"
export ASSAY W
db="$W/assay.db"
mkdir -p "$W/configs" "$W/data" "$W/sweeps" "$W/runs"
cd "$W"
t0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }

# config NAME [OUT]: the shipped examples/train/NAME.json with its "demo/..."
# paths pointing into $W, written to configs/OUT.json.
config() {
  sed "s#\"demo/#\"$W/#g" "$examples_dir/train/$1.json" > "configs/${2:-$1}.json"
}

# local_run SWEEP: run sweeps/SWEEP.json through the embedded coordinator and
# worker (one CPU slot per core), quietly; the log is in sweeps/SWEEP.log.
local_run() {
  if ! "$ASSAY" local "sweeps/$1.json" --db "$db" --work-dir "$W/.assay-local" > "sweeps/$1.log" 2>&1; then
    tail -n 30 "sweeps/$1.log" >&2
    echo "$PAPER: sweep $1 failed (log: $W/sweeps/$1.log)" >&2
    exit 1
  fi
  grep -E '^(succeeded|failed|cancelled)' "sweeps/$1.log" | tail -n 1 | sed "s/^/   $1: /" || true
}

# table SQL: print the result and the command that reprints it.
table() {
  "$ASSAY" query --db "$db" "$1"
  echo
  echo "SQL (rerun with: $ASSAY query --db $db \"...\"):"
  echo "$1"
}

done_msg() { echo; echo "== $PAPER done in $(( $(date +%s) - t0 ))s; database: $db"; }
