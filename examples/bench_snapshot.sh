#!/usr/bin/env bash
# snapshot-save of a large etcd database with --s3, against a bare `etcdctl snapshot save` of
# the same database on the same node, measured in one run; and the CLI's peak memory.
# Prints figures; asserts nothing.   Usage: examples/bench_snapshot.sh [MiB, default 400]
source "$(dirname "$0")/bench_lib.sh"
MIB=${1:-400}
bench_setup 3
"$LAB" reset >&2
cluster_yml 1       # one etcd host: the save itself, no copies to other hosts
cd "$WORK"
RK="$RKECTL_BIN"
"$RK" up --yes --new-pki >/dev/null 2>&1
echo "filling etcd with ~${MIB} MiB..." >&2
fill_etcd "$MIB"
# The secret key in a file: a flag's value is visible to every local user (ps).
(umask 077 && printf '%s\n' "$S3_SECRET_KEY" >"$WORK/s3-secret")
s3=(--s3 --s3-endpoint "$S3_ENDPOINT" --bucket-name "$S3_BUCKET" --access-key "$S3_ACCESS_KEY" --secret-key-file "$WORK/s3-secret")
bare() {  # etcdctl snapshot save on node1, with the cluster's certificate, no rkectl
  "$LAB" exec node1 docker run --rm --net host -v /etc/kubernetes/ssl:/etc/kubernetes/ssl:ro -v /tmp:/tmp \
    --entrypoint /usr/local/bin/etcdctl rkectl-lab/etcd:v3.4.23 --endpoints https://10.77.0.11:2379 \
    --cacert /etc/kubernetes/ssl/kube-ca.pem --cert /etc/kubernetes/ssl/kube-etcd-10-77-0-11.pem \
    --key /etc/kubernetes/ssl/kube-etcd-10-77-0-11-key.pem snapshot save "/tmp/bare-$1.db"
  "$LAB" exec node1 rm -f "/tmp/bare-$1.db"
}
for run in 1 2 3; do
  b=$(wall bare "$run")
  r=$(wall "$RK" etcd snapshot-save --name "bench-$run.db" "${s3[@]}")
  l=$(wall "$RK" etcd snapshot-save --name "bench-local-$run.db")
  size=$("$LAB" exec node1 stat -c %s "/opt/rke/etcd-snapshots/bench-$run.db.zip")
  printf 'run %s: %s MB snapshot; bare etcdctl save %ss; rkectl save+S3 upload %ss (ratio %.2f); rkectl save without S3 %ss (ratio %.2f)\n' \
    "$run" "$((size / 1000000))" "$b" "$r" "$(calc "$r / $b")" "$l" "$(calc "$l / $b")"
done
rss=$(peak_rss "$RK" etcd snapshot-save --name bench-rss.db "${s3[@]}")
echo "peak RSS of the rkectl CLI during snapshot-save --s3: $((rss / 1024)) MiB"
cluster_yml 3
"$RK" up --yes --new-pki >/dev/null 2>&1 || true
echo "(work dir: $WORK)"
