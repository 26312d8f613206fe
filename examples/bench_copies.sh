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

# Per copy of a --json stream: seconds from the fetch step's start to "copied directly"
# (two helpers started, the bytes sent, hashed and synced), then to the step's end (the
# copy checked where it landed: BLAKE3 and etcd's own check, reading it once more).
copy_secs() {
  /usr/bin/python3 -c '
import json, sys
start, copied, done = {}, {}, {}
for line in open(sys.argv[1]):
    e = json.loads(line).get("event")
    if not e or not e.get("id", "").startswith("fetch-snapshot"):
        continue
    if e["event"] == "step-started": start[e["id"]] = e["elapsed"]
    if e["event"] == "step-log" and "directly" in e["message"]: copied[e["id"]] = e["elapsed"]
    if e["event"] == "step-finished": done[e["id"]] = e["elapsed"]
c = [copied[i] - start[i] for i in copied]
v = [done[i] - copied[i] for i in copied]
print("%.3f %.3f" % (sum(c) / len(c), sum(v) / len(v)) if c else "0 0")' "$1"
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
# The same copies one at a time (--parallelism 1): one copy's own throughput.
"$RK" etcd snapshot-save --name serial --yes --json --parallelism 1 >"$WORK/serial.json" 2>/dev/null
read -r copy_s verify_s < <(copy_secs "$WORK/serial.json")
cp_ns=$("$LAB" exec node1 sh -c "a=\$(date +%s%N); cp $SNAP /var/tmp/copy-bench && sync; b=\$(date +%s%N); rm -f /var/tmp/copy-bench; echo \$((b - a))")
cp_s=$(calc "$cp_ns / 1e9" '%.3f')
read -r par_s _ < <(copy_secs "$WORK/save.json")

echo "3-node save of a $size-byte snapshot (2 copies):"
printf '  through the workstation   %s bytes, %s per snapshot byte copied\n' "$through" "$(calc "$through / (2 * $size)" '%.6f')"
printf '  rkectl counted            %s\n' "$(grep -o '"traffic":{[^}]*}' "$WORK/save.json")"
printf '  CLI peak RSS              %s MiB\n' "$(calc "$rss / 1024" '%.1f')"
printf '  two copies at once        %ss each  %s MB/s together\n' "$par_s" "$(calc "2 * $size / $par_s / 1e6" '%.1f')"
printf '  one copy alone            %ss  %s MB/s (then %ss to check it where it landed)\n' "$copy_s" "$(calc "$size / $copy_s / 1e6" '%.1f')" "$verify_s"
printf '  cp + sync on node1        %ss  %s MB/s\n' "$cp_s" "$(calc "$size / $cp_s / 1e6" '%.1f')"
printf '  one copy vs cp + sync     %s (throughput ratio)\n' "$(calc "$cp_s / $copy_s" '%.2f')"

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
