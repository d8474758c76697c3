#!/usr/bin/env bash
# Start-up time and memory of `assay` as a user meets them (issue 16, gap 2).
#
#   bench/footprint/footprint.sh [BINARY...]     (default: build/cli/assay)
#
# For each binary, in the same run so that figures compare:
#   - `assay --version` and `assay query "SELECT 1" --db X`: median and p90
#     wall time over N runs (ms; FOOTPRINT_RUNS, default 30), the mean CPU
#     time (task-clock from `perf stat`, when perf is installed), and the largest
#     max RSS of those runs (MB, from /usr/bin/time -f %M, or
#     getrusage through python3 when GNU time is absent);
#   - an idle `assay coordinator` and an idle `assay worker` (--gpus 0, which
#     needs no GPU) after FOOTPRINT_IDLE_S seconds (default 3): VmRSS and
#     VmHWM from /proc/PID/status (MB), and how many shared objects are mapped.
# Targets: < 15 ms and < 30 MB for the two commands; < 40 MB per idle daemon.
# Pass two binaries (e.g. a copy of the previous build and the current one)
# to get before/after figures from one run on one machine state.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
runs="${FOOTPRINT_RUNS:-30}"
idle_s="${FOOTPRINT_IDLE_S:-3}"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$root/build/cli/assay")

work="$(mktemp -d /tmp/assay-footprint.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Max RSS in KiB of one run of "$@" (stdout/stderr discarded).
max_rss_kb() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>&1 || true
    tail -n 1 "$work/rss"
  else
    python3 - "$@" <<'EOF'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
EOF
  fi
}

# "median_ms p90_ms cpu_ms maxrss_mb" of N runs of "$@".
measure() {
  local times=() i t0 t1 rss=0 r
  "$@" >/dev/null 2>&1 || { echo "footprint: '$*' failed:" >&2; "$@" >&2 || true; exit 1; }
  for ((i = 0; i < runs; i++)); do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  for ((i = 0; i < 5; i++)); do
    r=$(max_rss_kb "$@")
    [ "$r" -gt "$rss" ] && rss=$r
  done
  # CPU time (task-clock, ms): unlike wall time it barely moves with load.
  local cpu=-
  if command -v perf >/dev/null 2>&1; then
    cpu=$(perf stat -x, -e task-clock -r "$runs" -- "$@" 2>&1 >/dev/null | awk -F, '/task-clock/ { printf "%.1f", $1 }')
    [ -n "$cpu" ] || cpu=-
  fi
  printf '%s\n' "${times[@]}" | sort -n | awk -v rss="$rss" -v cpu="$cpu" '
    { v[NR] = $1 }
    END { printf "%.1f %.1f %s %.1f", v[int((NR + 1) / 2)] / 1000, v[int(NR * 0.9 + 0.5)] / 1000, cpu, rss / 1024 }'
  echo
}

# "rss_mb hwm_mb n_shared_objects" of a running process.
proc_mem() {
  local pid="$1"
  awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { printf "%.1f %.1f", r / 1024, h / 1024 }' \
    "/proc/$pid/status"
  printf ' %s\n' "$(awk '$6 ~ /\.so/ { print $6 }' "/proc/$pid/maps" | sort -u | wc -l)"
}

wait_for_file() {
  local f="$1" i
  for ((i = 0; i < 200; i++)); do [ -s "$f" ] && return 0; sleep 0.05; done
  echo "footprint: $f did not appear" >&2
  return 1
}

printf '%-28s %-26s %8s %8s %8s %8s %8s %5s\n' binary measure p50_ms p90_ms cpu_ms rss_mb hwm_mb libs
n=0
for bin in "${bins[@]}"; do
  n=$((n + 1))
  d="$work/$n"
  mkdir -p "$d"
  label="$bin"
  [ ${#label} -le 28 ] || label="...${label: -25}"
  # A private copy: a rebuild relinking the binary mid-run must not skew it.
  cp "$bin" "$d/assay"
  bin="$d/assay"
  "$bin" coordinator init --dir "$d" >/dev/null
  "$bin" coordinator --db "$d/assay.db" --listen 127.0.0.1:0 --port-file "$d/port" \
    >"$d/coordinator.log" 2>&1 &
  cpid=$!
  pids+=("$cpid")
  wait_for_file "$d/port"
  port="$(cat "$d/port")"
  "$bin" worker --coordinator "http://127.0.0.1:$port" --token-file "$d/worker.token" \
    --id footprint --gpus 0 --cpus 1 --work-dir "$d/work" >"$d/worker.log" 2>&1 &
  wpid=$!
  pids+=("$wpid")

  read -r p50 p90 cpu rss < <(measure "$bin" --version) || { echo "footprint: $label --version failed" >&2; exit 1; }
  printf '%-28s %-26s %8s %8s %8s %8s %8s %5s\n' "$label" "assay --version" "$p50" "$p90" "$cpu" "$rss" - -
  read -r p50 p90 cpu rss < <(measure "$bin" query "SELECT 1" --db "$d/assay.db") ||
    { echo "footprint: $label query failed" >&2; exit 1; }
  printf '%-28s %-26s %8s %8s %8s %8s %8s %5s\n' "$label" 'assay query "SELECT 1"' "$p50" "$p90" "$cpu" "$rss" - -

  sleep "$idle_s"
  read -r r h l < <(proc_mem "$cpid") || { echo "footprint: the coordinator exited:" >&2; cat "$d/coordinator.log" >&2; exit 1; }
  printf '%-28s %-26s %8s %8s %8s %8s %8s %5s\n' "$label" "idle coordinator" - - - "$r" "$h" "$l"
  read -r r h l < <(proc_mem "$wpid") || { echo "footprint: the worker exited:" >&2; cat "$d/worker.log" >&2; exit 1; }
  printf '%-28s %-26s %8s %8s %8s %8s %8s %5s\n' "$label" "idle worker (--gpus 0)" - - - "$r" "$h" "$l"

  kill -INT "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  kill -TERM "$cpid" 2>/dev/null || true
  wait "$cpid" 2>/dev/null || true
  pids=()
done
