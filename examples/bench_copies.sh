#!/usr/bin/env bash
# Where a snapshot's bytes go, measured in one run on the lab (issue: "snapshot bytes never
# pass through the workstation"):
#   - a 3-node save (the snapshot copied from node1 to node2 and node3): bytes through the
#     workstation per snapshot byte copied, counted by the lab bridge's own port (not by
#     rkectl), and the CLI's peak RSS;
#   - the throughput of one host-to-host copy (the fetch-snapshot step's own time) against
#     `cp` + `sync` of the same file on node1;
#   - a restore that distributes the snapshot from node1, 5 nodes against 1.
# Prints figures and ratios; asserts nothing.   Usage: examples/bench_copies.sh [MiB, default 400]
source "$(dirname "$0")/bench_lib.sh"
MIB=${1:-400}
bench_setup 5
cd "$WORK"
RK="$RKECTL_BIN"
SNAP=/opt/rke/etcd-snapshots/copies.zip

bridge_bytes() {
  local dev
  dev=$(ip -o -4 addr show | awk -v gw="$NET_GATEWAY/" 'index($4, gw) == 1 { print $2; exit }')
  echo $(($(cat "/sys/class/net/$dev/statistics/rx_bytes") + $(cat "/sys/class/net/$dev/statistics/tx_bytes")))
}

# Peak RSS (KiB) and the --json stream of one rkectl command.
run_json() {  # OUT_FILE ARGS…
  local out=$1
  shift
  /usr/bin/python3 - "$out" "$@" <<'PY'
import resource, subprocess, sys
with open(sys.argv[1], "w") as f:
    subprocess.run(sys.argv[2:], stdout=f, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}

# The longest fetch-snapshot step of a --json stream, in seconds.
fetch_secs() {
  /usr/bin/python3 -c '
import json, sys
ms = [e["event"]["millis"] for e in map(json.loads, open(sys.argv[1])) if "event" in e
      and e["event"].get("event") == "step-finished" and e["event"].get("kind") == "fetch-snapshot"]
print(max(ms) / 1000 if ms else 0)' "$1"
}

"$LAB" reset >&2
cluster_yml 3
"$RK" up --yes --new-pki >/dev/null 2>&1
echo "writing $MIB MiB into etcd" >&2
fill_etcd "$MIB"

before=$(bridge_bytes)
rss=$(run_json "$WORK/save.json" "$RK" etcd snapshot-save --name copies --yes --json)
through=$(($(bridge_bytes) - before))
size=$("$LAB" exec node1 stat -c %s "$SNAP")
copy_s=$(fetch_secs "$WORK/save.json")
cp_ns=$("$LAB" exec node1 sh -c "a=\$(date +%s%N); cp $SNAP /var/tmp/copy-bench && sync; b=\$(date +%s%N); rm -f /var/tmp/copy-bench; echo \$((b - a))")
cp_s=$(calc "$cp_ns / 1e9" '%.3f')

echo "3-node save of a $size-byte snapshot (2 copies):"
printf '  through the workstation   %s bytes, %s per snapshot byte copied\n' "$through" "$(calc "$through / (2 * $size)" '%.6f')"
printf '  CLI peak RSS              %s MiB\n' "$(calc "$rss / 1024" '%.1f')"
printf '  host-to-host copy         %ss  %s MB/s\n' "$copy_s" "$(calc "$size / $copy_s / 1e6" '%.1f')"
printf '  cp + sync on node1        %ss  %s MB/s\n' "$cp_s" "$(calc "$size / $cp_s / 1e6" '%.1f')"
printf '  copy vs cp + sync         %s (throughput ratio)\n' "$(calc "$cp_s / $copy_s" '%.2f')"

declare -A T
for n in 1 5; do
  "$LAB" reset >&2
  cluster_yml "$n"
  "$RK" up --yes --new-pki >/dev/null 2>&1
  fill_etcd "$((MIB / 4))"
  "$RK" etcd snapshot-save --name copies --yes >/dev/null 2>&1
  for i in $(seq 2 "$n"); do
    "$LAB" exec "node$i" rm -f "$SNAP" /opt/rke/etcd-snapshots/.rkectl/copies.json
  done
  T[$n]=$(wall "$RK" etcd snapshot-restore --name copies --yes)
done
echo "restore of a $((MIB / 4)) MiB database, distributed from node1:"
printf '  1 node    %ss  (1.00)\n' "${T[1]}"
printf '  5 nodes   %ss  (%.2f)\n' "${T[5]}" "$(calc "${T[5]} / ${T[1]}")"
echo "(work dir: $WORK)"
