#!/usr/bin/env bash
# Restore wall time for 1, 3 and 5 etcd nodes, and for 5 nodes with --parallelism 1 (serial,
# as RKE restores), measured in one run; ratios against the 1-node restore.
# Prints figures; asserts nothing.   Usage: examples/bench_restore.sh [MiB, default 100]
source "$(dirname "$0")/bench_lib.sh"
MIB=${1:-100}
bench_setup 5
cd "$WORK"
RK="$RKECTL_BIN"
declare -A T
for n in 1 3 5; do
  "$LAB" reset >&2
  cluster_yml "$n"
  "$RK" up --yes --new-pki >/dev/null 2>&1
  fill_etcd "$MIB"
  "$RK" etcd snapshot-save --name bench.db >/dev/null 2>&1
  T[$n]=$(wall "$RK" etcd snapshot-restore --name bench.db --yes)
  echo "$n node(s): restore ${T[$n]}s" >&2
  if [[ $n == 5 ]]; then
    T[serial]=$(wall "$RK" etcd snapshot-restore --name bench.db --yes --parallelism 1)
  fi
done
printf 'restore of a %s MiB database:\n' "$MIB"
printf '  1 node              %ss  (1.00)\n' "${T[1]}"
printf '  3 nodes             %ss  (%.2f)\n' "${T[3]}" "$(calc "${T[3]} / ${T[1]}")"
printf '  5 nodes             %ss  (%.2f)\n' "${T[5]}" "$(calc "${T[5]} / ${T[1]}")"
printf '  5 nodes, serial     %ss  (%.2f)\n' "${T[serial]}" "$(calc "${T[serial]} / ${T[1]}")"
echo "(work dir: $WORK)"
