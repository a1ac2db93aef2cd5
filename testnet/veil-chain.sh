#!/usr/bin/env bash
# veil-chain.sh: veil's side of the speed comparison in docs/performance.md,
# measured as a user runs veil: `veil node` processes with default settings
# (only the listen address and the anonymity mode set), linked in a chain
# n0 - n1 - ... - n(N-1), files inserted with `veil put` at the far end and
# fetched with `veil get` at n0, each get timed from the outside.
#
# Usage:
#   testnet/veil-chain.sh DIR MODE SIZES REPEATS [NODES]
#     MODE     tunnel (the default mode) or none
#     SIZES    comma-separated, e.g. 32KiB,1MiB,8MiB
#     REPEATS  gets of each size (each a fresh file, so no cache answers)
#     NODES    chain length (default 6)
#
# Environment:
#   VEIL        the binary (default target/release/veil)
#   BASE_PORT   first listen port (default 7600)
#   PUT_CONCURRENCY  `veil put --concurrency` (default 128, its default)
#   GAP_S       seconds to wait between a file's put and its get (default
#               0). In the tunnel mode a get more than `reaction_ms` (2 s)
#               after the tunnel's last answer is fresh and leaves at once;
#               one sooner may be a reaction and waits the random delay.
#
# Prints a table (size, each time, median) and a JSON line
# {"mode":...,"nodes":...,"sizes":{SIZE: median seconds}}; stops the nodes.

set -euo pipefail

DIR=${1:?usage: veil-chain.sh DIR MODE SIZES REPEATS [NODES]}
MODE=${2:?mode}
SIZES=${3:?sizes}
REPEATS=${4:?repeats}
NODES=${5:-6}
VEIL=${VEIL:-target/release/veil}
BASE_PORT=${BASE_PORT:-7600}

bytes_of() {
    local s=$1 n u
    n=${s%%[KMG]iB}
    u=${s#"$n"}
    case $u in
        KiB) echo $((n * 1024)) ;;
        MiB) echo $((n * 1024 * 1024)) ;;
        GiB) echo $((n * 1024 * 1024 * 1024)) ;;
        *) echo "$s" ;;
    esac
}

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

rm -rf "$DIR"
mkdir -p "$DIR"
for i in $(seq 0 $((NODES - 1))); do
    "$VEIL" init "$DIR/n$i" --listen "127.0.0.1:$((BASE_PORT + i))" >/dev/null 2>&1
    echo "anonymity = \"$MODE\"" >"$DIR/n$i/mode.toml"
    # Top-level keys go before the first table of node.toml.
    { cat "$DIR/n$i/mode.toml"; cat "$DIR/n$i/node.toml"; } >"$DIR/n$i/node.toml.new"
    mv "$DIR/n$i/node.toml.new" "$DIR/n$i/node.toml"
    rm "$DIR/n$i/mode.toml"
done
key_of() { "$VEIL" id "$DIR/n$1" | sed -n 's/^public_key *= *"\(.*\)"/\1/p'; }
for i in $(seq 0 $((NODES - 2))); do
    j=$((i + 1))
    "$VEIL" add-peer "$DIR/n$i" "127.0.0.1:$((BASE_PORT + j))" "$(key_of $j)" >/dev/null
    "$VEIL" add-peer "$DIR/n$j" "127.0.0.1:$((BASE_PORT + i))" "$(key_of $i)" >/dev/null
done
for i in $(seq 0 $((NODES - 1))); do
    "$VEIL" node "$DIR/n$i" >"$DIR/n$i.log" 2>&1 &
    PIDS+=($!)
done
# Wait until every link is up (each node sees its chain neighbours).
for _ in $(seq 1 100); do
    up=0
    for i in $(seq 0 $((NODES - 1))); do
        want=2
        if [ "$i" = 0 ] || [ "$i" = $((NODES - 1)) ]; then want=1; fi
        got=$("$VEIL" status --node "$DIR/n$i/client.sock" --json 2>/dev/null |
            python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["peers"] if p.get("connected")))' 2>/dev/null || echo 0)
        if [ "$got" -ge "$want" ]; then up=$((up + 1)); fi
    done
    if [ "$up" = "$NODES" ]; then break; fi
    sleep 0.2
done

last=$((NODES - 1))
printf 'veil %s, %d-node chain of `veil node` processes (default settings), `veil get` wall time in seconds\n' "$MODE" "$NODES"
printf '%-8s' size
for r in $(seq 1 "$REPEATS"); do printf '  #%-7s' "$r"; done
printf '   median\n'
json="{\"mode\":\"$MODE\",\"nodes\":$NODES,\"sizes\":{"
first=1
IFS=, read -r -a sizes <<<"$SIZES"
for s in "${sizes[@]}"; do
    n=$(bytes_of "$s")
    times=()
    for r in $(seq 1 "$REPEATS"); do
        f="$DIR/f-$s-$r.bin"
        head -c "$n" /dev/urandom >"$f"
        uri=$("$VEIL" put --node "$DIR/n$last/client.sock" --concurrency "${PUT_CONCURRENCY:-128}" "$f" 2>"$DIR/put.err" | tail -1) ||
            { echo "put of $s failed: $(tail -1 "$DIR/put.err")" >&2; exit 1; }
        sleep "${GAP_S:-0}"
        t0=$(date +%s.%N)
        "$VEIL" get --node "$DIR/n0/client.sock" "$uri" -o "$DIR/out.bin" 2>"$DIR/get.err" ||
            { echo "get of $s failed: $(tail -1 "$DIR/get.err")" >&2; exit 1; }
        t1=$(date +%s.%N)
        cmp -s "$f" "$DIR/out.bin" || { echo "get of $s returned other bytes" >&2; exit 1; }
        times+=("$(python3 -c "print(f'{$t1 - $t0:.6f}')")")
    done
    med=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    printf '%-8s' "$s"
    for t in "${times[@]}"; do printf '  %-8s' "$t"; done
    printf '   %s\n' "$med"
    if [ $first = 0 ]; then json+=","; fi
    first=0
    json+="\"$s\":$med"
done
json+="}}"
echo "$json"
