#!/usr/bin/env bash
# The wall time of a restore drill of a large snapshot, for the runbook: a 3-node cluster
# filled with MiB of data, one snapshot, then `rkectl etcd snapshot-drill` on the host that
# holds it and on one that must first get a staged copy. Prints figures; asserts nothing.
# Usage: examples/bench_drill.sh [MiB, default 400]
source "$(dirname "$0")/bench_lib.sh"
MIB=${1:-400}
bench_setup 3
cd "$WORK"
RK="$RKECTL_BIN"
"$LAB" reset >&2
cluster_yml 3
"$RK" up --yes --new-pki >/dev/null 2>&1
echo "writing $MIB MiB into etcd" >&2
fill_etcd "$MIB"
"$RK" etcd snapshot-save --name drill.db --yes >/dev/null 2>&1
"$LAB" exec node3 rm -f /opt/rke/etcd-snapshots/drill.db.zip /opt/rke/etcd-snapshots/.rkectl/drill.db.json

report() {  # HOST: one drill there, as "size restore_ms drill_ms wall_s keys"
  local t0 t1
  t0=$(date +%s.%N)
  "$RK" etcd snapshot-drill --name drill.db --host "$1" --json >"$WORK/drill-$1.json" 2>/dev/null
  t1=$(date +%s.%N)
  /usr/bin/python3 -c '
import json, sys
r = next(e["event"]["report"] for e in map(json.loads, open(sys.argv[1])) if e.get("event", {}).get("event") == "drill-report")
print(r["snapshot"]["size"], r["restore_millis"], r["total_millis"], sys.argv[2], r["restored"]["keys"])' \
    "$WORK/drill-$1.json" "$(calc "$t1 - $t0" '%.3f')"
}
read -r size r1 d1 w1 keys < <(report 10.77.0.11)
read -r _ r3 d3 w3 _ < <(report 10.77.0.13)
echo "drill of a $size-byte snapshot ($keys keys):"
printf '  on the host that holds it    etcd restore %.1fs, drill helper %.1fs, command %ss\n' \
  "$(calc "$r1 / 1000")" "$(calc "$d1 / 1000")" "$w1"
printf '  on a host given a copy       etcd restore %.1fs, drill helper %.1fs, command %ss\n' \
  "$(calc "$r3 / 1000")" "$(calc "$d3 / 1000")" "$w3"
echo "(work dir: $WORK)"
