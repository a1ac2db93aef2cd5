#!/usr/bin/env bash
# tor-anchor.sh: the Tor speed anchor of docs/performance.md.
#
# Builds a private Tor network on this machine's loopback (nothing leaves
# 127.0.0.0/8), shaped like chutney's "basic" network: 3 directory
# authorities that are also relays, 2 more relays, 1 client. Every relay is
# voted Guard, Exit and HSDir (TestingDirAuthVote*) and exits to 127.0.0.0/8
# only. The client builds Tor's ordinary 3-hop circuits (path length is not
# touched), and `curl --socks5-hostname` through its SocksPort fetches files
# from a `python3 -m http.server` on loopback. The medians of curl's
# time_total are the anchor against which veil's transfer times are read:
# what a well-known 3-hop onion-routing overlay costs on the same machine,
# over the same loopback links, with the same client tool.
#
# Usage:
#   testnet/tor-anchor.sh up    DIR               build and start the network, wait until usable
#   testnet/tor-anchor.sh fetch DIR URL [REPEATS] curl URL through the client, print each time_total
#   testnet/tor-anchor.sh down  DIR               stop everything started in DIR (safe to repeat)
#   testnet/tor-anchor.sh run   DIR SIZES REPEATS up; fetch files of SIZES (e.g. 32KiB,1MiB,8MiB)
#                                                 REPEATS times each; print a table and a JSON line; down
#
# Environment:
#   TOR_ANCHOR_BASE_PORT   first port used (default 5100); the network uses BASE..BASE+50
#   TOR_ANCHOR_UP_TIMEOUT  seconds `up` waits for bootstrap and a working fetch (default 180)
#   TOR_ANCHOR_WEB_ADDR    address of the web server (default 127.0.0.2, see below)
#   TOR, TOR_GENCERT       binaries (default tor, tor-gencert)
#
# Notes on the choices (each was needed on tor 0.4.9.11):
# - The web server listens on 127.0.0.2, not on the relays' 127.0.0.1. A
#   client asked for an address where a relay lives treats that relay as an
#   "exit enclave": it pins every stream to that one exit and gets there by
#   extending a preemptive 3-hop circuit, so streams ride 4-hop circuits.
# - The client uses full descriptors (UseMicrodescriptors 0). A microdescriptor
#   only carries a port summary of the exit policy, which for a policy that
#   accepts just 127.0.0.0/8 is "reject 1-65535": the client finds no exit.
# - The exit policy accepts 127.0.0.0/8, rejects the rest of IPv4 with two /1
#   rules, then ends in "accept *:*", which no IPv4 address reaches (IPv6
#   exits are off). Ending in "reject *:*" instead makes tor's predicted-port
#   logic, which judges exits with the address unknown, count every port as
#   "probably rejected" and launch circuits to doomed exits by the thousand.
# - `up` waits until every tor (not just the client) has bootstrapped: an
#   exit refuses streams whose previous hop is not in its own consensus yet.
# - Circuit paths are checked through the client's ControlPort: `up` and `run`
#   report the hop count of the circuits that carried the streams. Tor 0.4.9
#   may carry a stream on a conflux leg (a set of two 3-hop circuits to one
#   exit); that is Tor's default behaviour and is reported, not changed.
#
# Tor runs as a daemon (RunAsDaemon 1) under `nice -n 10`, with its PidFile,
# DataDirectory and logs in DIR/nodes/NAME. Running as root works: tor only
# warns, and no User option is set. `up` wipes and rebuilds DIR (only if this
# script made it or it is empty), so it may be repeated.

set -euo pipefail

TOR=${TOR:-tor}
TOR_GENCERT=${TOR_GENCERT:-tor-gencert}
BASE=${TOR_ANCHOR_BASE_PORT:-5100}
UP_TIMEOUT=${TOR_ANCHOR_UP_TIMEOUT:-180}
WEB_ADDR=${TOR_ANCHOR_WEB_ADDR:-127.0.0.2}
NICE=(nice -n 10)

AUTHS=(auth0 auth1 auth2)
RELAYS=(relay3 relay4)
CLIENT=client5
MARKER=.tor-anchor

# Port layout, from BASE: node i has ORPort BASE+i and DirPort BASE+20+i;
# the client's SocksPort is BASE+40 and ControlPort BASE+41; http.server BASE+50.
orport() { echo $((BASE + $1)); }
dirport() { echo $((BASE + 20 + $1)); }
set_ports() {
    SOCKS_PORT=$((BASE + 40))
    CONTROL_PORT=$((BASE + 41))
    HTTP_PORT=$((BASE + 50))
}
set_ports
# `up` records its settings in DIR/settings; fetch, run and down read them back.
load_settings() {
    if [[ -s $1/settings ]]; then
        BASE=$(sed -n 's/^base=//p' "$1/settings")
        WEB_ADDR=$(sed -n 's/^web=//p' "$1/settings")
        set_ports
    fi
}

log() { printf '[tor-anchor %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '/^# Usage:/,/^# Environment:/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# A pid file's process, if it is still alive and still ours.
live_pid() {
    local f=$1 pid
    [[ -s $f ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE '(^|/)tor |http\.server|streams\.py' || return 1
    echo "$pid"
}

pid_files() {
    local dir=$1 f
    shopt -s nullglob
    for f in "$dir"/monitor.pid "$dir"/nodes/*/pid "$dir"/http.pid; do echo "$f"; done
    shopt -u nullglob
}

do_down() {
    local dir=$1 f pid pids=() alive i
    [[ -d $dir ]] || return 0
    while read -r f; do
        if pid=$(live_pid "$f"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done < <(pid_files "$dir")
    # tor waits ShutdownWaitLength (1 s) before it exits on SIGTERM.
    for i in $(seq 50); do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        pids=("${alive[@]}")
        ((${#pids[@]} == 0)) && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    while read -r f; do rm -f "$f"; done < <(pid_files "$dir")
    log "down: $dir stopped"
}

# Settings every tor of the network shares (chutney's common.i, without Sandbox).
common_torrc() {
    local name=$1 nd=$2
    cat <<EOF
# Generated by testnet/tor-anchor.sh; node $name.
TestingTorNetwork 1
AssumeReachable 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteGuard *
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
DataDirectory $nd
RunAsDaemon 1
PidFile $nd/pid
Nickname $name
ShutdownWaitLength 1
Log notice file $nd/notice.log
Log info file $nd/info.log
SafeLogging 0
LogTimeGranularity 1
EOF
    cat "$DIRAUTH_FILE"
}

relay_torrc() {
    local i=$1
    cat <<EOF
SocksPort 0
ORPort 127.0.0.1:$(orport "$i")
DirPort 127.0.0.1:$(dirport "$i")
Address 127.0.0.1
ContactInfo tor-anchor-$i@test.invalid
ExitRelay 1
ExitPolicyRejectPrivate 0
ExitPolicy accept 127.0.0.0/8:*
ExitPolicy reject 0.0.0.0/1:*
ExitPolicy reject 128.0.0.0/1:*
ExitPolicy accept *:*
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
EOF
    [[ -e /etc/resolv.conf ]] || echo "ServerDNSResolvConfFile /dev/null"
}

authority_torrc() {
    cat <<EOF
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 20
TestingV3AuthInitialVoteDelay 4
TestingV3AuthInitialDistDelay 4
V3AuthVotingInterval 20
V3AuthVoteDelay 4
V3AuthDistDelay 4
EOF
}

client_torrc() {
    cat <<EOF
SocksPort 127.0.0.1:$SOCKS_PORT
ControlPort 127.0.0.1:$CONTROL_PORT
CookieAuthentication 1
UseMicrodescriptors 0
EOF
}

# The stream monitor: records, through the client's ControlPort, which circuit
# carried each stream to the web server and that circuit's path. On SIGTERM (or when tor goes
# away) it prints one line per stream and a summary line.
write_monitor() {
    cat >"$1/streams.py" <<'EOF'
import signal, socket, sys

cookie = open(sys.argv[1], "rb").read().hex()
sock = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10)
f = sock.makefile("rb")
circs = {}    # circuit id -> (purpose, [relay names])
streams = []  # (stream id, circuit id, target)


def note_circ(fields):
    # "<id> BUILT <path> KEY=VALUE..."
    if len(fields) >= 3 and fields[1] == "BUILT" and "=" not in fields[2]:
        purpose = next((x[8:] for x in fields if x.startswith("PURPOSE=")), "?")
        circs[fields[0]] = (purpose, [h.split("~")[-1] for h in fields[2].split(",")])


def handle(line):
    fields = line.split()
    if line.startswith("650 CIRC "):
        note_circ(fields[2:])
    elif line.startswith("650 STREAM ") and len(fields) >= 6 and fields[3] == "SUCCEEDED" \
            and fields[5] == sys.argv[3]:
        streams.append((fields[2], fields[4], fields[5]))


def reply():
    out = []
    while True:
        line = f.readline().decode().rstrip("\r\n")
        if not line:
            raise EOFError
        if line.startswith("650"):
            handle(line)
            continue
        out.append(line)
        if line[3:4] == "+":
            while True:
                d = f.readline().decode().rstrip("\r\n")
                if d == ".":
                    break
                out.append(d)
        elif line[3:4] == " ":
            if not line.startswith("250"):
                sys.exit("control port: " + line)
            return out


def command(c):
    sock.sendall((c + "\r\n").encode())
    return reply()


def stop(*_):
    raise KeyboardInterrupt


command("AUTHENTICATE " + cookie)
for line in command("GETINFO circuit-status")[1:]:
    note_circ(line.split())
command("SETEVENTS CIRC STREAM")
sock.settimeout(None)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
try:
    while True:
        line = f.readline().decode().rstrip("\r\n")
        if not line:
            break
        handle(line)
except KeyboardInterrupt:
    pass
hops = []
for sid, cid, target in streams:
    purpose, path = circs.get(cid, ("?", []))
    hops.append(len(path))
    print(f"stream {sid} to {target} on circuit {cid} ({purpose}): {len(path)} hops {','.join(path)}")
n3 = sum(1 for h in hops if h == 3)
conflux = sum(1 for s in streams if circs.get(s[1], ("",))[0].startswith("CONFLUX"))
print(f"summary streams={len(streams)} three_hop={n3} conflux={conflux} hops={','.join(map(str, sorted(set(hops))))}")
EOF
}

monitor_start() {
    local dir=$1 i
    rm -f "$dir/streams.out"
    python3 "$dir/streams.py" "$dir/nodes/$CLIENT/control_auth_cookie" "$CONTROL_PORT" \
        "$WEB_ADDR:$HTTP_PORT" >"$dir/streams.out" 2>&1 </dev/null &
    echo $! >"$dir/monitor.pid"
    for i in $(seq 50); do
        grep -q '^ready' "$dir/streams.out" 2>/dev/null && return 0
        kill -0 "$(cat "$dir/monitor.pid")" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/streams.out" >&2
    die "the stream monitor did not start"
}

# Stops the monitor; prints its summary line's fields (streams=.. three_hop=..).
monitor_stop() {
    local dir=$1 pid
    pid=$(cat "$dir/monitor.pid")
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$dir/monitor.pid"
    sed -n 's/^summary //p' "$dir/streams.out"
}

wait_pidfile() {
    local f=$1 i
    for i in $(seq 100); do
        live_pid "$f" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start_tor() {
    local nd=$1
    if ! "${NICE[@]}" "$TOR" --defaults-torrc "$EMPTY_TORRC" -f "$nd/torrc" >"$nd/start.log" 2>&1; then
        cat "$nd/start.log" >&2
        die "tor failed to start for $nd"
    fi
    wait_pidfile "$nd/pid" || die "tor for $nd wrote no pid file (see $nd/notice.log)"
}

# `up` gave up: show the client's last words, stop everything, fail.
up_failed() {
    local dir=$1
    tail -n 5 "$dir/nodes/$CLIENT/notice.log" >&2 || true
    do_down "$dir"
    die "$2 (logs kept in $dir/nodes/*/notice.log and info.log)"
}

probe() {
    curl -sS -f --max-time "$1" --socks5-hostname "127.0.0.1:$SOCKS_PORT" \
        -o /dev/null "http://$WEB_ADDR:$HTTP_PORT/probe" 2>/dev/null
}

do_up() {
    local dir=$1 t0 i p name nd fpr v3 deadline left pending summary
    t0=$(date +%s)
    for p in "$TOR" "$TOR_GENCERT" curl python3; do
        command -v "$p" >/dev/null || die "$p not found"
    done

    if [[ -d $dir ]]; then
        if [[ -e $dir/$MARKER ]]; then
            load_settings "$dir"
            do_down "$dir"
            BASE=${TOR_ANCHOR_BASE_PORT:-5100} WEB_ADDR=${TOR_ANCHOR_WEB_ADDR:-127.0.0.2}
            set_ports
            rm -rf "${dir:?}/nodes" "$dir/www" "$dir"/{dirauth.conf,empty.torrc,settings,http.log,streams.py,streams.out}
        elif [[ -n $(ls -A "$dir") ]]; then
            die "$dir exists, is not empty and was not made by this script"
        fi
    fi
    mkdir -p "$dir/nodes" "$dir/www"
    dir=$(cd "$dir" && pwd)
    touch "$dir/$MARKER"
    printf 'base=%s\nweb=%s\n' "$BASE" "$WEB_ADDR" >"$dir/settings"
    DIRAUTH_FILE=$dir/dirauth.conf
    EMPTY_TORRC=$dir/empty.torrc # tor will not read /dev/null as a torrc
    : >"$EMPTY_TORRC"

    for i in 0 1 2 3 4; do
        for p in "$(orport "$i")" "$(dirport "$i")"; do
            port_busy 127.0.0.1 "$p" && die "port $p is in use; set TOR_ANCHOR_BASE_PORT"
        done
    done
    for p in "$SOCKS_PORT" "$CONTROL_PORT"; do
        port_busy 127.0.0.1 "$p" && die "port $p is in use; set TOR_ANCHOR_BASE_PORT"
    done
    port_busy "$WEB_ADDR" "$HTTP_PORT" && die "port $WEB_ADDR:$HTTP_PORT is in use; set TOR_ANCHOR_BASE_PORT"

    log "up: $("$TOR" --version | head -1) network in $dir, ports $BASE..$HTTP_PORT, web server $WEB_ADDR"

    # Keys: authority identity and signing keys and certificates from
    # tor-gencert (empty passphrase); relay identities from tor --list-fingerprint.
    : >"$DIRAUTH_FILE"
    for i in 0 1 2 3 4; do
        if ((i < 3)); then name=${AUTHS[$i]}; else name=${RELAYS[$((i - 3))]}; fi
        nd=$dir/nodes/$name
        mkdir -p -m 700 "$nd/keys"
        if ((i < 3)); then
            echo "" | "$TOR_GENCERT" --create-identity-key --passphrase-fd 0 -m 12 \
                -a "127.0.0.1:$(dirport "$i")" \
                -i "$nd/keys/authority_identity_key" \
                -s "$nd/keys/authority_signing_key" \
                -c "$nd/keys/authority_certificate" >"$nd/gencert.log" 2>&1 ||
                { cat "$nd/gencert.log" >&2; die "tor-gencert failed for $name"; }
        fi
        "$TOR" --list-fingerprint --defaults-torrc "$EMPTY_TORRC" -f "$EMPTY_TORRC" \
            --DataDirectory "$nd" --Nickname "$name" --ORPort "$(orport "$i")" \
            --DirAuthority "placeholder orport=1 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff" \
            >"$nd/fingerprint.log" 2>&1 ||
            { cat "$nd/fingerprint.log" >&2; die "tor --list-fingerprint failed for $name"; }
        if ((i < 3)); then
            fpr=$(awk '{print $2}' "$nd/fingerprint")
            v3=$(awk '$1 == "fingerprint" {print $2}' "$nd/keys/authority_certificate")
            [[ ${#fpr} == 40 && ${#v3} == 40 ]] || die "could not read the fingerprints of $name"
            echo "DirAuthority $name orport=$(orport "$i") v3ident=$v3 127.0.0.1:$(dirport "$i") $fpr" >>"$DIRAUTH_FILE"
        fi
    done

    for i in 0 1 2 3 4; do
        if ((i < 3)); then name=${AUTHS[$i]}; else name=${RELAYS[$((i - 3))]}; fi
        nd=$dir/nodes/$name
        {
            common_torrc "$name" "$nd"
            relay_torrc "$i"
            if ((i < 3)); then authority_torrc; fi
        } >"$nd/torrc"
    done
    nd=$dir/nodes/$CLIENT
    mkdir -p -m 700 "$nd"
    { common_torrc "$CLIENT" "$nd"; client_torrc; } >"$nd/torrc"
    write_monitor "$dir"

    # The web server, with a small file for the readiness check.
    head -c 1024 /dev/urandom >"$dir/www/probe"
    nohup setsid "${NICE[@]}" python3 -m http.server --bind "$WEB_ADDR" --directory "$dir/www" \
        "$HTTP_PORT" >"$dir/http.log" 2>&1 </dev/null &
    echo $! >"$dir/http.pid"

    for name in "${AUTHS[@]}" "${RELAYS[@]}" "$CLIENT"; do
        start_tor "$dir/nodes/$name"
    done
    live_pid "$dir/http.pid" >/dev/null || { cat "$dir/http.log" >&2; die "http.server did not start"; }
    log "up: 6 tor daemons started; waiting (at most ${UP_TIMEOUT}s) for all of them to bootstrap"

    deadline=$((t0 + UP_TIMEOUT))
    while true; do
        pending=()
        for name in "${AUTHS[@]}" "${RELAYS[@]}" "$CLIENT"; do
            grep -q 'Bootstrapped 100%' "$dir/nodes/$name/notice.log" 2>/dev/null || pending+=("$name")
        done
        ((${#pending[@]} == 0)) && break
        if (($(date +%s) >= deadline)); then
            up_failed "$dir" "not bootstrapped within ${UP_TIMEOUT}s: ${pending[*]}"
        fi
        sleep 1
    done
    log "up: all bootstrapped 100% after $(($(date +%s) - t0))s; waiting for a test fetch"
    while left=$((deadline - $(date +%s))); ! probe $((left < 15 ? (left < 1 ? 1 : left) : 15)); do
        if (($(date +%s) >= deadline)); then
            up_failed "$dir" "no test fetch through 127.0.0.1:$SOCKS_PORT succeeded within ${UP_TIMEOUT}s"
        fi
        sleep 2
    done
    monitor_start "$dir"
    probe 30 || up_failed "$dir" "a second test fetch failed"
    summary=$(monitor_stop "$dir")
    grep -h '^stream ' "$dir/streams.out" | sed 's/^/[tor-anchor] /' >&2
    log "up: network usable after $(($(date +%s) - t0))s (SocksPort 127.0.0.1:$SOCKS_PORT, web http://$WEB_ADDR:$HTTP_PORT/)"
    [[ $summary == *"hops=3" ]] || log "WARNING: the test stream did not ride a 3-hop circuit ($summary)"
}

# fetch DIR URL REPEATS: one time_total (seconds) per line on stdout.
do_fetch() {
    local dir=$1 url=$2 n=${3:-1} k
    [[ -e $dir/$MARKER ]] || die "$dir is not a tor-anchor network (run: $0 up $dir)"
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive integer"
    load_settings "$dir"
    live_pid "$dir/nodes/$CLIENT/pid" >/dev/null || die "the client of $dir is not running"
    for ((k = 0; k < n; k++)); do
        curl -sS -f --max-time 300 --socks5-hostname "127.0.0.1:$SOCKS_PORT" \
            -o /dev/null -w '%{time_total}\n' "$url" || die "fetch of $url failed"
    done
}

# Bytes in a size like 32KiB, 1MiB, 8MiB, 1GiB, 500KB, 4096.
size_bytes() {
    local s=$1 n u
    [[ $s =~ ^([0-9]+)([A-Za-z]*)$ ]] || die "bad size: $s"
    n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]}
    case $u in
    "" | B) echo "$n" ;;
    KiB | K | k) echo $((n * 1024)) ;;
    MiB | M) echo $((n * 1024 * 1024)) ;;
    GiB | G) echo $((n * 1024 * 1024 * 1024)) ;;
    KB | kB) echo $((n * 1000)) ;;
    MB) echo $((n * 1000 * 1000)) ;;
    GB) echo $((n * 1000 * 1000 * 1000)) ;;
    *) die "bad size unit: $s" ;;
    esac
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

do_run() {
    local dir=$1 sizes=$2 n=$3 s k times med json="" ver summary hops list
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive integer"
    IFS=, read -r -a list <<<"$sizes"
    ((${#list[@]} > 0)) || die "no sizes given"
    for s in "${list[@]}"; do size_bytes "$s" >/dev/null; done
    RUN_DIR=$dir
    trap 'do_down "$RUN_DIR"' EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    do_up "$dir"
    dir=$(cd "$dir" && pwd)
    RUN_DIR=$dir
    for s in "${list[@]}"; do
        head -c "$(size_bytes "$s")" /dev/urandom >"$dir/www/file-$s"
    done
    ver=$("$TOR" --version | head -1 | sed 's/^Tor version //; s/\.$//')
    monitor_start "$dir"
    printf '\nTor %s, private network of 5 relays (3 authorities) on loopback, curl time_total in seconds\n' "$ver"
    printf '%-8s  %s %s\n' size "$(for ((k = 1; k <= n; k++)); do printf '%-9s ' "#$k"; done)" median
    for s in "${list[@]}"; do
        times=$(do_fetch "$dir" "http://$WEB_ADDR:$HTTP_PORT/file-$s" "$n")
        med=$(median <<<"$times")
        # shellcheck disable=SC2086 # one word per time
        printf '%-8s  %s %s\n' "$s" "$(printf '%-9s ' $times)" "$med"
        json+="${json:+,}\"$s\":$med"
    done
    summary=$(monitor_stop "$dir")
    printf 'streams: %s (hop counts of the circuits that carried them; details in %s)\n' "$summary" "$dir/streams.out"
    hops=null
    if [[ $summary == *"hops=3" ]]; then
        hops=3
    else
        log "WARNING: not every measured stream rode a 3-hop circuit: $summary"
    fi
    printf '{"anchor":"tor","tor":"%s","hops":%s,"repeats":%d,"sizes":{%s}}\n' "$ver" "$hops" "$n" "$json"
}

cmd=${1:-}
case $cmd in
up) (($# == 2)) || usage; do_up "$2" ;;
fetch) (($# == 3 || $# == 4)) || usage; do_fetch "$2" "$3" "${4:-1}" ;;
down) (($# == 2)) || usage; load_settings "$2"; do_down "$2" ;;
run) (($# == 4)) || usage; do_run "$2" "$3" "$4" ;;
*) usage ;;
esac
