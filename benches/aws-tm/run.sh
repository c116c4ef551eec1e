#!/usr/bin/env bash
# s3pump against the AWS transfer manager (aws-sdk-s3-transfer-manager), on
# the same real S3 server in its own process, back to back:
#
#   bash benches/aws-tm/run.sh            (from the repository root)
#
# What it measures (docs/PERFORMANCE.md "s3pump against the AWS transfer
# manager" has the results and what each client sends):
#   a. one 1 GiB file up, 8 MiB parts, 8 in flight, over http and https
#   b. the same object down to a file, 8 MiB ranges, 8 in flight
#   c. a tree of 400 files of 64-512 KiB: up (tree upload) and down
#   d. a tree of 1000 files of 1 MiB: up
# Each transfer is its own process under /usr/bin/time: wall seconds and the
# client's user+sys CPU seconds (the server's and the TLS terminator's are
# not counted). Every download is compared with its source (cmp, diff -r).
#
# Needs (it installs nothing; it stops and says what is missing):
#   - s3s-fs 0.14.1 with its binary (the s3s of s3pump's Cargo.lock):
#       cargo install s3s-fs@0.14.1 --features binary --locked
#   - stunnel4 (the TLS terminator in front of s3s-fs) and GNU time:
#       apt-get install stunnel4 time
#   - openssl (makes the CA and the server certificate), python3 (the data,
#     wire.py, the summary), cmp, diff
#   - about 8 GB free under $BENCH_DIR
# It builds (cargo build --release) the two clients:
#   - s3pump with --features cli, into $CARGO_TARGET_DIR (else ./target)
#   - benches/aws-tm (aws-tm-bench), into $AWSTM_TARGET_DIR (else
#     benches/aws-tm/target); aws-lc-sys builds without cmake (~2.5 min).
#
# Environment:
#   BENCH_DIR   scratch directory (default: a new one under /tmp; removed
#               at the end unless KEEP=1)
#   REPS        runs of each client per row, alternating which goes first
#               (default 3); the tables show every run
#   SCHEMES     "http https" (default), or one of them
#   ROWS        which rows: "file tree1 tree2" (default all)
#   PORT        first of four loopback ports (default 18014: s3s-fs on
#               PORT, stunnel on PORT+1; wire.py on PORT+2, stunnel in
#               front of it on PORT+3)
#   TREE_N      objects at once in the tree rows, for both (default 16,
#               s3pump's default --concurrency)
#   S3PUMP, AWSTM  prebuilt binaries to use instead of building
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REPS=${REPS:-3}
SCHEMES=${SCHEMES:-http https}
ROWS=${ROWS:-file tree1 tree2}
PORT=${PORT:-18014}
TREE_N=${TREE_N:-16}
TLS_PORT=$((PORT + 1))
AK=AKIAIOSFODNN7EXAMPLE
SK=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY

missing=()
command -v s3s-fs >/dev/null || missing+=("s3s-fs: cargo install s3s-fs@0.14.1 --features binary --locked")
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || missing+=("stunnel4: apt-get install stunnel4")
[ -x /usr/bin/time ] || missing+=("GNU time: apt-get install time")
for c in openssl python3 cmp diff; do command -v $c >/dev/null || missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh needs:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi
STUNNEL=$(command -v stunnel4 || command -v stunnel)

if [ -z "${S3PUMP:-}" ]; then
    echo "building s3pump (cargo build --release --features cli)" >&2
    (cd "$ROOT" && cargo build --release --features cli --bin s3pump -q)
    S3PUMP=${CARGO_TARGET_DIR:-$ROOT/target}/release/s3pump
fi
if [ -z "${AWSTM:-}" ]; then
    echo "building aws-tm-bench (cargo build --release in benches/aws-tm)" >&2
    AWSTM_TARGET_DIR=${AWSTM_TARGET_DIR:-$ROOT/benches/aws-tm/target}
    (cd "$ROOT/benches/aws-tm" && CARGO_TARGET_DIR=$AWSTM_TARGET_DIR cargo build --release -q)
    AWSTM=$AWSTM_TARGET_DIR/release/aws-tm-bench
fi

if [ -z "${BENCH_DIR:-}" ]; then
    BENCH_DIR=$(mktemp -d /tmp/s3pump-awstm.XXXXXX)
fi
mkdir -p "$BENCH_DIR"
D=$BENCH_DIR
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$D"; fi
}
trap cleanup EXIT

# --- the data -------------------------------------------------------------
echo "making the data in $D" >&2
mkdir -p "$D/data" "$D/store/bench" "$D/out"
head -c $((1 << 30)) /dev/urandom >"$D/data/big"
python3 - "$D/data" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(12)
# 400 files of 64-512 KiB in 20 directories, two levels deep.
for i in range(400):
    d = os.path.join(root, "tree1", f"d{i % 5}", f"e{i % 4}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:03}.bin"), "wb") as f:
        f.write(os.urandom(rng.randint(64, 512) * 1024))
# 1000 files of 1 MiB in 10 directories.
for i in range(1000):
    d = os.path.join(root, "tree2", f"d{i % 10}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:04}.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
EOF
sync

# --- the server, and the TLS terminator in front of it ------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=s3pump bench CA" \
    -keyout "$D/ca.key" -out "$D/ca.pem" -addext basicConstraints=critical,CA:true \
    -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$D/server.key" -out "$D/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$D/ext"
openssl x509 -req -in "$D/server.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" \
    -CAcreateserial -days 2 -extfile "$D/ext" -out "$D/server.pem" 2>/dev/null

s3s-fs --host 127.0.0.1 --port "$PORT" --access-key "$AK" --secret-key "$SK" \
    "$D/store" >"$D/s3s-fs.log" 2>&1 &
PIDS+=($!)
cat >"$D/stunnel.conf" <<EOF
foreground = yes
pid =
debug = 3
[s3]
accept = 127.0.0.1:$TLS_PORT
connect = 127.0.0.1:$PORT
cert = $D/server.pem
key = $D/server.key
[wire]
accept = 127.0.0.1:$((PORT + 3))
connect = 127.0.0.1:$((PORT + 2))
cert = $D/server.pem
key = $D/server.key
EOF
"$STUNNEL" "$D/stunnel.conf" >"$D/stunnel.log" 2>&1 &
PIDS+=($!)
# The logging relay (wire.py) for "what each client sends", on PORT+2
# (http) and behind stunnel on PORT+3 (https).
python3 "$ROOT/benches/aws-tm/wire.py" $((PORT + 2)) "$PORT" "$D/wire.log" &
PIDS+=($!)
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 100); do
    if up "$PORT" && up "$TLS_PORT" && up $((PORT + 2)) && up $((PORT + 3)); then break; fi
    sleep 0.1
done
for p in "$PORT" "$TLS_PORT" $((PORT + 2)) $((PORT + 3)); do
    up "$p" || { echo "nothing listens on 127.0.0.1:$p (see $D/*.log; KEEP=1 keeps them)" >&2; exit 1; }
done

export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1
# Nothing may look for EC2 metadata or a profile's settings.
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL 2>/dev/null || true

endpoint() { if [ "$1" = https ]; then echo "https://127.0.0.1:$TLS_PORT"; else echo "http://127.0.0.1:$PORT"; fi; }

# --- one timed client process ------------------------------------------------
RESULTS=$D/results.tsv
: >"$RESULTS"
# run ROW SCHEME CLIENT CMD...: runs CMD under /usr/bin/time, appends
# ROW SCHEME CLIENT wall user sys maxrss_kib to the results.
run() {
    local row=$1 scheme=$2 client=$3
    shift 3
    local ep
    ep=$(endpoint "$scheme")
    sync
    if ! AWS_ENDPOINT_URL=$ep AWS_CA_BUNDLE=$D/ca.pem SSL_CERT_FILE=$D/ca.pem \
        /usr/bin/time -f '%e %U %S %M' -o "$D/time" "$@" >"$D/stdout" 2>"$D/stderr"; then
        echo "FAILED: $row $scheme $client: $*" >&2
        cat "$D/stderr" >&2
        exit 1
    fi
    read -r wall user sys rss <"$D/time"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$scheme" "$client" "$wall" "$user" "$sys" "$rss" >>"$RESULTS"
    printf '%-28s %-5s %-26s wall %6.2f s  cpu %5.2f s (%s+%s)  rss %4d MiB\n' \
        "$row" "$scheme" "$client" "$wall" "$(awk "BEGIN{print $user + $sys}")" "$user" "$sys" $((rss / 1024)) >&2
}

# Clears the bucket on the server's disk between rows (the server keeps no
# state of its own about objects: s3s-fs is the directory).
clear_bucket() {
    rm -rf "$D/store/bench" "$D/store"/.bucket-* "$D/store"/.upload* 2>/dev/null || true
    mkdir -p "$D/store/bench"
}

# Both clients, REPS times, alternating which goes first.
# pair ROW SCHEME 'S3PUMP ARGS' 'AWSTM ARGS' CHECK_CMD ['S3PUMP ARGS 2'], with
# $TM_ENV (VAR=VALUE words) set for aws-tm-bench; with a sixth argument, a
# third client "s3pump-2" runs s3pump with those arguments in the same rounds.
pair() {
    local row=$1 scheme=$2 sp=$3 tm=$4 check=$5 sp2=${6:-}
    local clients="s3pump tm"
    if [ -n "$sp2" ]; then clients="s3pump s3pump-2 tm"; fi
    for rep in $(seq "$REPS"); do
        local order=$clients
        if [ $((rep % 2)) = 0 ]; then order=$(echo "$clients" | tr ' ' '\n' | tac | tr '\n' ' '); fi
        for c in $order; do
            rm -rf "$D/out"
            mkdir -p "$D/out"
            case $c in
            # shellcheck disable=SC2086
            s3pump) run "$row" "$scheme" s3pump "$S3PUMP" $sp --no-progress ;;
            # shellcheck disable=SC2086
            s3pump-2) run "$row" "$scheme" "s3pump ${sp2%% *}" "$S3PUMP" $sp ${sp2} --no-progress ;;
            # shellcheck disable=SC2086
            tm) run "$row" "$scheme" awstm env $TM_ENV "$AWSTM" $tm ;;
            esac
            eval "$check"
        done
    done
}

# --- what each client sends (through wire.py; not timed) --------------------------
head -c $((20 << 20)) "$D/data/big" >"$D/data/small"
head -c $((100 << 10)) "$D/data/big" >"$D/data/tiny"
echo "what each client sends (a 20 MiB file in 8 MiB parts, a 100 KiB file, the 20 MiB back):"
for scheme in http https; do
    if [ $scheme = https ]; then wep=https://127.0.0.1:$((PORT + 3)); else wep=http://127.0.0.1:$((PORT + 2)); fi
    for c in s3pump awstm; do
        : >"$D/wire.log"
        if [ $c = s3pump ]; then
            AWS_ENDPOINT_URL=$wep AWS_CA_BUNDLE=$D/ca.pem "$S3PUMP" put "$D/data/small" s3://bench/w-small --no-progress >/dev/null
            AWS_ENDPOINT_URL=$wep AWS_CA_BUNDLE=$D/ca.pem "$S3PUMP" put "$D/data/tiny" s3://bench/w-tiny --no-progress >/dev/null
            AWS_ENDPOINT_URL=$wep AWS_CA_BUNDLE=$D/ca.pem "$S3PUMP" get s3://bench/w-small "$D/out/w" --no-progress >/dev/null
        else
            AWS_ENDPOINT_URL=$wep SSL_CERT_FILE=$D/ca.pem "$AWSTM" upload "$D/data/small" s3://bench/w-small >/dev/null
            AWS_ENDPOINT_URL=$wep SSL_CERT_FILE=$D/ca.pem "$AWSTM" upload "$D/data/tiny" s3://bench/w-tiny >/dev/null
            AWS_ENDPOINT_URL=$wep SSL_CERT_FILE=$D/ca.pem "$AWSTM" download s3://bench/w-small "$D/out/w" >/dev/null
        fi
        cmp "$D/data/small" "$D/out/w"
        rm -f "$D/out/w"
        sleep 0.2
        echo "  $c over $scheme:"
        sort "$D/wire.log" | uniq -c | sed 's/^/    /'
    done
done

uname_cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "machine: $uname_cpu ($(nproc) CPUs), $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$D/header" >&2
echo "s3pump: $("$S3PUMP" --version); aws-sdk-s3-transfer-manager 0.3.1; s3s-fs $(s3s-fs --version | cut -d' ' -f2); $("$STUNNEL" -version 2>&1 | grep -m1 '^stunnel' | cut -d' ' -f1-2)" | tee -a "$D/header" >&2
start=$(date +%s)

B=s3://bench
for scheme in $SCHEMES; do
    for r in $ROWS; do
        case $r in
        file)
            # 8 MiB parts, 8 in flight: s3pump's defaults, set for both.
            TM_ENV="TM_PART_SIZE=8388608 TM_CONCURRENCY=8"
            # Over http s3pump signs the parts' SHA-256 by default where the
            # transfer manager sends UNSIGNED-PAYLOAD: also run s3pump with
            # --unsigned-payload there, the transfer manager's wire.
            UNSIGNED=
            if [ "$scheme" = http ]; then UNSIGNED=--unsigned-payload; fi
            clear_bucket
            pair "1 GiB file up" "$scheme" \
                "put $D/data/big $B/big-sp --part-size 8MiB --max-inflight-parts 8" \
                "upload $D/data/big $B/big-tm" true "$UNSIGNED"
            # Both download the same object (s3pump's upload of it).
            pair "1 GiB file down" "$scheme" \
                "get $B/big-sp $D/out/big --part-size 8MiB --max-inflight-parts 8" \
                "download $B/big-sp $D/out/big" 'cmp "$D/data/big" "$D/out/big"'
            ;;
        tree1)
            # 16 objects at once (s3pump's default --concurrency), set for
            # both; the transfer manager's requests in flight capped at 16 too.
            TM_ENV="TM_PART_SIZE=8388608 TM_CONCURRENCY=$TREE_N TM_OBJECTS=$TREE_N"
            clear_bucket
            pair "400 x 64-512 KiB tree up" "$scheme" \
                "cp --recursive --concurrency $TREE_N $D/data/tree1 $B/t1-sp" \
                "upload-objects $D/data/tree1 $B/t1-tm/" true
            pair "400 x 64-512 KiB tree down" "$scheme" \
                "cp --recursive --concurrency $TREE_N $B/t1-sp $D/out/t" \
                "download-objects $B/t1-sp/ $D/out/t" 'diff -r "$D/data/tree1" "$D/out/t"'
            ;;
        tree2)
            TM_ENV="TM_PART_SIZE=8388608 TM_CONCURRENCY=$TREE_N TM_OBJECTS=$TREE_N"
            clear_bucket
            pair "1000 x 1 MiB tree up" "$scheme" \
                "cp --recursive --concurrency $TREE_N $D/data/tree2 $B/t2-sp" \
                "upload-objects $D/data/tree2 $B/t2-tm/" true
            ;;
        esac
    done
done
clear_bucket
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - start)) s" | tee -a "$D/header" >&2

# --- the table ------------------------------------------------------------------
echo
cat "$D/header"
echo
echo "| row | scheme | client | wall s | client CPU s (user+sys) | peak RSS MiB |"
echo "|:---|:---|:---|---:|---:|---:|"
while IFS=$'\t' read -r row scheme client wall user sys rss; do
    printf '| %s | %s | %s | %.2f | %.2f (%.2f+%.2f) | %d |\n' "$row" "$scheme" "$client" \
        "$wall" "$(awk "BEGIN{print $user + $sys}")" "$user" "$sys" $((rss / 1024))
done <"$RESULTS"

# --- the summary: median and range per row, and s3pump against the transfer manager
echo
python3 - "$RESULTS" <<'EOF'
import collections, statistics, sys
runs = collections.OrderedDict()
for line in open(sys.argv[1]):
    row, scheme, client, wall, user, sys_, rss = line.rstrip("\n").split("\t")
    runs.setdefault((row, scheme), collections.OrderedDict()).setdefault(client, []).append(
        (float(wall), float(user) + float(sys_), int(rss) // 1024))
print("| row | scheme | client | runs | wall s, median (range) | client CPU s, median (range) | peak RSS MiB | wall vs TM | CPU vs TM |")
print("|:---|:---|:---|---:|---:|---:|---:|---:|---:|")
med = statistics.median
for (row, scheme), clients in runs.items():
    tm = clients.get("awstm")
    for client, xs in clients.items():
        w, c, r = [x[0] for x in xs], [x[1] for x in xs], [x[2] for x in xs]
        vs = ("", "")
        if tm and client != "awstm":
            vs = ("%.2f×" % (med(w) / med([x[0] for x in tm])), "%.2f×" % (med(c) / med([x[1] for x in tm])))
        name = "AWS TM" if client == "awstm" else client
        print("| %s | %s | %s | %d | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %d | %s | %s |" % (
            row, scheme, name, len(xs), med(w), min(w), max(w), med(c), min(c), max(c), max(r), vs[0], vs[1]))
EOF
