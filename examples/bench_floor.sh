#!/usr/bin/env bash
# What rkectl's restore costs over the floor, in one run on the lab: a 1-node restore by
# rkectl against the same steps typed by hand on that node (stop etcd, the etcd image's
# `etcdctl snapshot restore`, move the data in, start etcd, wait until it is healthy; the
# etcd container carries its endpoint and TLS settings as ETCDCTL_* variables), of
# the same plain database snapshot. Three rounds each, alternating. Then the cost of a
# resume that finds every step done (the last restore's journal put back): its wall time
# against its own dial steps.
# Prints figures and the ratio; asserts nothing.   Usage: examples/bench_floor.sh [MiB, default 100]
source "$(dirname "$0")/bench_lib.sh"
MIB=${1:-100}
bench_setup 1
cd "$WORK"
RK="$RKECTL_BIN"
IMAGE=rkectl-lab/etcd:v3.4.23
IP=10.77.0.11
CERT=/etc/kubernetes/ssl/kube-etcd-10-77-0-11
TLS="--cacert /etc/kubernetes/ssl/kube-ca.pem --cert $CERT.pem --key $CERT-key.pem"

"$LAB" reset >&2
cluster_yml 1
"$RK" up --yes --new-pki >/dev/null 2>&1
echo "writing $MIB MiB into etcd" >&2
fill_etcd "$MIB"
# A plain database, as etcdctl writes it: both ways restore exactly this file.
"$LAB" exec node1 docker run --rm --net host -v /etc/kubernetes/ssl:/etc/kubernetes/ssl:ro \
  -v /opt/rke/etcd-snapshots:/opt/rke/etcd-snapshots --entrypoint /usr/local/bin/etcdctl "$IMAGE" \
  --endpoints "https://$IP:2379" $TLS snapshot save /opt/rke/etcd-snapshots/floor.db >/dev/null

by_hand() {
  "$LAB" exec node1 sh -c "
    set -e
    docker stop etcd >/dev/null
    rm -rf /var/lib/etcd/by-hand
    docker run --rm -v /opt/rke/etcd-snapshots:/opt/rke/etcd-snapshots:ro -v /var/lib/etcd:/var/lib/rancher/etcd \
      -e ETCDCTL_API=3 --entrypoint /usr/local/bin/etcdctl $IMAGE snapshot restore /opt/rke/etcd-snapshots/floor.db \
      --data-dir=/var/lib/rancher/etcd/by-hand --name etcd-node1 --initial-cluster etcd-node1=https://$IP:2380 \
      --initial-cluster-token etcd-cluster-1 --initial-advertise-peer-urls https://$IP:2380 >/dev/null
    rm -rf /var/lib/etcd/member && mv /var/lib/etcd/by-hand/member /var/lib/etcd/member && rm -rf /var/lib/etcd/by-hand
    docker start etcd >/dev/null
    until docker exec etcd etcdctl endpoint health >/dev/null 2>&1; do sleep 0.1; done"
}

declare -a H R
for round in 1 2 3; do
  H+=("$(wall by_hand)")
  R+=("$(wall "$RK" etcd snapshot-restore --name floor.db --yes)")
  echo "round $round: by hand ${H[-1]}s, rkectl ${R[-1]}s" >&2
done
best() { printf '%s\n' "$@" | sort -n | head -1; }
h=$(best "${H[@]}")
r=$(best "${R[@]}")
size=$("$LAB" exec node1 stat -c %s /opt/rke/etcd-snapshots/floor.db)
echo "1-node restore of a $size-byte database (best of 3):"
printf '  by hand (stop, etcdctl snapshot restore, move, start, healthy)  %ss  (1.00)\n' "$h"
printf '  rkectl etcd snapshot-restore                                  %ss  (%.2f)\n' "$r" "$(calc "$r / $h")"
# Resume after the last completed step: the finished restore's journal, put back.
cp "$WORK/cluster.rkectl-journal.last" "$WORK/cluster.rkectl-journal"
t0=$(date +%s.%N)
"$RK" apply --yes --json >"$WORK/resume.json" 2>/dev/null
t1=$(date +%s.%N)
resume_s=$(calc "$t1 - $t0" '%.3f')
dial_s=$(/usr/bin/python3 -c '
import json, sys
ms = [e["event"]["millis"] for e in map(json.loads, open(sys.argv[1])) if "event" in e
      and e["event"].get("event") == "step-finished" and e["event"].get("kind") == "dial"]
print("%.3f" % (max(ms) / 1000 if ms else 0))' "$WORK/resume.json")
printf '  resume with every step done                                    %ss  (its dial %ss; the rest %ss)\n' \
  "$resume_s" "$dial_s" "$(calc "$resume_s - $dial_s" '%.3f')"
echo "(work dir: $WORK)"
