#!/usr/bin/env bash
# The rkectl demo, on a fresh Debian machine as root: the lab comes up (nodes with sshd and
# Docker, an S3 server) and builds an etcd plane the way RKE builds one (RKE's PKI and
# cluster.rkestate, RKE's containers, rke-tools' snapshots); rkectl finds nothing to change
# in it, takes a snapshot (to S3, as cluster.yml's backup_config says) and drills it (it
# restores, and this is what it holds), a disaster strikes
# (a key is overwritten and a member's data destroyed), rkectl shows the restore plan, and
# the restore brings the data back, leaving every certificate as RKE wrote it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rkectl-target}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# RKECTL_BIN=/path/to/rkectl runs the demo with that binary (an installed release) instead
# of building one.
if [[ -n "${RKECTL_BIN:-}" ]]; then
  RKECTL="$RKECTL_BIN"
  say "Bringing up the lab (first time: a few minutes); rkectl is $RKECTL"
else
  say "Building rkectl and bringing up the lab (first time: a few minutes)"
  cargo build --bin rkectl
  RKECTL="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/debug/rkectl"
fi
"$RKECTL" --version
eval "$(tests/lab/lab up --nodes 3)"
tests/lab/lab reset
export RKECTL_KNOWN_HOSTS="$KNOWN_HOSTS"

work=$(mktemp -d /tmp/rkectl-demo.XXXXXX)
say "A cluster as RKE builds it, on node1..node3 (tests/lab/lab rke-up)"
tests/lab/lab rke-up --dir "$work" --etcd node1,node2,node3 >/dev/null
cd "$work"
export CLUSTER_YML="$work/cluster.yml"
lab() { "$OLDPWD/tests/lab/lab" "$@"; }
ssl() { for n in node1 node2 node3; do lab exec "$n" sh -c 'cat /etc/kubernetes/ssl/*'; done | sha256sum; }
ssl_before=$(ssl)

say "cluster.yml and RKE's cluster.rkestate (in $work)"
cat cluster.yml
ls -l cluster.rkestate

say "rkectl plan up: nothing to change in what RKE built"
"$RKECTL" plan up

say "rkectl etcd snapshot-list: rke-tools' archives, one per host"
"$RKECTL" etcd snapshot-list

say "Writing some keys"
lab etcdctl --node node1 put /app/config "version 1"
lab etcdctl --node node2 put /app/users "alice,bob"

say "rkectl etcd snapshot-save --name demo.db: demo.db.zip on every etcd host and in S3"
"$RKECTL" etcd snapshot-save --name demo.db --yes
"$RKECTL" etcd snapshot-list

say "rkectl etcd snapshot-drill --name demo.db: it restores, and this is what is in it (the cluster is not touched)"
"$RKECTL" etcd snapshot-drill --name demo.db --compare-live

say "Disaster: a bad deploy overwrites a key and node3 loses its etcd data"
lab etcdctl --node node1 put /app/config "BROKEN"
lab exec node3 sh -c 'docker rm -f etcd >/dev/null && rm -rf /var/lib/etcd/member'
lab etcdctl get /app/config --print-value-only || true

say "rkectl plan etcd snapshot-restore --name demo.db --out restore.plan: review before anything is destroyed"
"$RKECTL" plan etcd snapshot-restore --name demo.db --out restore.plan

say "rkectl apply restore.plan --yes: exactly the plan reviewed (refused if anything changed since)"
"$RKECTL" apply restore.plan --yes

say "The data is back on every member"
for n in node1 node2 node3; do
  printf '%s: /app/config = %s\n' "$n" "$(lab etcdctl --node "$n" get /app/config --print-value-only)"
done
lab etcdctl endpoint health
if [[ $(ssl) == "$ssl_before" ]]; then echo "Every file in /etc/kubernetes/ssl is as RKE wrote it."; else echo "CERTIFICATES CHANGED"; exit 1; fi

say "Done. The lab stays up; tests/lab/lab down removes it. Files: $work"
