# Shared by the lab benchmarks: the lab, a cluster.yml of N etcd nodes, data to snapshot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rkectl-target}"
REPO=$PWD
LAB="$REPO/tests/lab/lab"

bench_setup() {  # NODES
  cargo build --release --bin rkectl >&2
  RKECTL_BIN="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/rkectl"
  export RKECTL_BIN
  eval "$("$LAB" up --nodes "$1")"
  export RKECTL_KNOWN_HOSTS="$KNOWN_HOSTS"
  WORK=$(mktemp -d /tmp/rkectl-bench.XXXXXX)
  export CLUSTER_YML="$WORK/cluster.yml"
}

cluster_yml() {  # N: nodes 1..N with the etcd role
  {
    echo "cluster_name: bench"
    echo "nodes:"
    for i in $(seq 1 "$1"); do
      printf '  - address: 10.77.0.1%s\n    hostname_override: node%s\n    user: root\n    role: [etcd]\n    ssh_key_path: %s\n' "$i" "$i" "$SSH_KEY"
    done
    printf 'services:\n  etcd:\n    image: rkectl-lab/etcd:v3.4.23\nsystem_images:\n  etcd: rkectl-lab/etcd:v3.4.23\n'
  } >"$CLUSTER_YML"
}

fill_etcd() {  # N: write N values of ~1 MB of random data
  local i
  for i in $(seq 1 "$1"); do
    # 750,000 random bytes are 1,000,000 base64 characters: under etcd's 1.5 MiB request limit.
    head -c 750000 /dev/urandom | base64 -w0 | "$LAB" etcdctl --node node1 put "/bench/$i" >/dev/null
  done
}

# Arithmetic without bc: calc EXPR [FORMAT].
calc() { /usr/bin/python3 -c "print(format($1, '${2:-.6f}'[1:] if '${2:-}' else '.6f'))"; }

# Wall time of a command in seconds (3 decimals), its output discarded.
wall() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  calc "$t1 - $t0" '%.3f'
}

# Peak RSS (KiB) of a command and its children.
peak_rss() {
  /usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}
