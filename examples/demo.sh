#!/usr/bin/env bash
# The rkectl demo, on a fresh Debian machine as root: the lab comes up (nodes with sshd and
# Docker, an S3 server), rkectl builds a TLS etcd plane, takes a snapshot to S3, a disaster
# strikes (a key is overwritten and a member's data destroyed), rkectl shows the restore
# plan, and the restore brings the data back.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rkectl-target}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building rkectl and bringing up the lab (first time: a few minutes)"
cargo build --bin rkectl
eval "$(tests/lab/lab up --nodes 3)"
tests/lab/lab reset
RKECTL="$CARGO_TARGET_DIR/debug/rkectl"
export RKECTL_KNOWN_HOSTS="$KNOWN_HOSTS"

work=$(mktemp -d /tmp/rkectl-demo.XXXXXX)
cp "$CLUSTER_YML" "$work/cluster.yml"
cd "$work"
export CLUSTER_YML="$work/cluster.yml"
lab() { "$OLDPWD/tests/lab/lab" "$@"; }
s3=(--s3 --s3-endpoint "$S3_ENDPOINT" --bucket-name "$S3_BUCKET" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY")

say "cluster.yml (in $work)"
cat cluster.yml

say "rkectl plan up: what up would do"
"$RKECTL" plan up

say "rkectl up: a TLS etcd plane on node1..node3"
"$RKECTL" up --yes

say "Writing some keys"
lab etcdctl --node node1 put /app/config "version 1"
lab etcdctl --node node2 put /app/users "alice,bob"

say "rkectl etcd snapshot-save --name demo.db --s3: on every etcd host and in S3"
"$RKECTL" etcd snapshot-save --name demo.db "${s3[@]}"
"$RKECTL" etcd snapshot-list "${s3[@]}"

say "Disaster: a bad deploy overwrites a key and node3 loses its etcd data"
lab etcdctl --node node1 put /app/config "BROKEN"
lab exec node3 sh -c 'docker rm -f etcd >/dev/null && rm -rf /var/lib/etcd/member'
lab etcdctl get /app/config --print-value-only || true

say "rkectl plan etcd snapshot-restore --name demo.db: review before anything is destroyed"
"$RKECTL" plan etcd snapshot-restore --name demo.db

say "rkectl etcd snapshot-restore --name demo.db --yes"
"$RKECTL" etcd snapshot-restore --name demo.db --yes

say "The data is back on every member"
for n in node1 node2 node3; do
  printf '%s: /app/config = %s\n' "$n" "$(lab etcdctl --node "$n" get /app/config --print-value-only)"
done
lab etcdctl endpoint health

say "Done. The lab stays up; tests/lab/lab down removes it. Files: $work"
