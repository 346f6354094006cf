#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft: broker + controller in one JVM) on 127.0.0.1 for
# development, CI and the integration tests. No Docker, no ZooKeeper: Java 17 and the jars
# that deploy/kafka/pom.xml fetches from Maven Central into deploy/kafka/lib/.
#
#   bash deploy/kafka/kafka.sh up       # fetch jars if missing, format, start, wait until it answers
#   bash deploy/kafka/kafka.sh status   # "running pid=... bootstrap=..." (exit 0) or "stopped ..." (exit 3)
#   bash deploy/kafka/kafka.sh down     # SIGTERM, wait, SIGKILL fallback
#   bash deploy/kafka/kafka.sh jars     # only fetch the jars
#
# Options (each also read from the environment; flags win):
#   --port N             KAFKA_PORT             client listener          (default 9092)
#   --controller-port N  KAFKA_CONTROLLER_PORT  KRaft controller listener (default 9093)
#   --data-dir DIR       KAFKA_DATA_DIR         data, logs, pid file     (default <repo>/.kafka)
#   --timeout S          KAFKA_START_TIMEOUT    readiness wait in seconds (default 90)
#   KAFKA_STOP_TIMEOUT (30 s), KAFKA_HEAP (512m), KAFKA_JVM_OPTS (extra JVM flags),
#   KAFKA_CDS=0 (no class-data-sharing archive in lib/), KAFKA_PYTHON: a Python with
#   kafka-python for the readiness probe (default <repo>/.venv/bin/python)
#
# `up` is idempotent: a broker already running from the same data dir on the same ports is
# reported and left alone. Data dir layout: server.properties (rendered from the template
# next to this script on every up), kraft-logs/ (topics and the KRaft metadata log),
# logs/ (server.log, controller.log, kafka.out, format.log), kafka.pid.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LIB="$HERE/lib"
# The pom is the one place the version is pinned.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
DATA_DIR="${KAFKA_DATA_DIR:-$REPO/.kafka}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP="${KAFKA_HEAP:-512m}"
if [[ -z "${KAFKA_PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then KAFKA_PYTHON="$REPO/.venv/bin/python"; else KAFKA_PYTHON=python3; fi
fi

die() { echo "kafka.sh: $*" >&2; exit 1; }

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
CMD="$1"; shift
while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) PORT="${2:?--port needs a value}"; shift 2 ;;
        --controller-port) CONTROLLER_PORT="${2:?--controller-port needs a value}"; shift 2 ;;
        --data-dir) DATA_DIR="${2:?--data-dir needs a value}"; shift 2 ;;
        --timeout) START_TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (try --help)" ;;
    esac
done

check_port() {  # name value
    if ! [[ "$2" =~ ^[1-9][0-9]*$ ]] || (( $2 < 1 || $2 > 65535 )); then die "$1 must be a port number 1..65535, got '$2'"; fi
}
check_port --port "$PORT"
check_port --controller-port "$CONTROLLER_PORT"
[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "--port and --controller-port must differ (both $PORT)"
[[ "$START_TIMEOUT" =~ ^[0-9]+$ && "$START_TIMEOUT" -gt 0 ]] || die "--timeout must be a positive whole number of seconds, got '$START_TIMEOUT'"
[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "KAFKA_STOP_TIMEOUT must be a whole number of seconds, got '$STOP_TIMEOUT'"
# The path is substituted into a properties file with sed: refuse what would corrupt either.
[[ "$DATA_DIR" != *[\|\&\\]* && "$DATA_DIR" != *$'\n'* ]] || die "--data-dir must not contain '|', '&', '\\' or newlines: '$DATA_DIR'"
DATA_DIR="$(realpath -m -- "$DATA_DIR")"
CFG="$DATA_DIR/server.properties"
LOGS="$DATA_DIR/logs"
PIDFILE="$DATA_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$PORT"

have_jars() { [[ -n "$KAFKA_VERSION" && -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" && -n "$(compgen -G "$LIB/log4j-slf4j-impl-*.jar")" ]]; }

ensure_jars() {
    [[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> in $HERE/pom.xml"
    have_jars && return 0
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka $KAFKA_VERSION jars into $LIB"
    # Jars of another version would mix two brokers on one class path.
    rm -f "$LIB"/*.jar "$LIB"/*.jsa
    echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars into $LIB" >&2
    local out; out="$(mktemp)"
    # Offline first (works from the ~/.m2 cache without network), then online.
    if ! mvn -B -q -o -f "$HERE/pom.xml" package >"$out" 2>&1; then
        mvn -B -q -f "$HERE/pom.xml" package >"$out" 2>&1 || { tail -n 30 "$out" >&2; rm -f "$out"; die "mvn could not fetch the Kafka jars"; }
    fi
    rm -f "$out"
    have_jars || die "mvn finished but $LIB/kafka_2.13-$KAFKA_VERSION.jar is missing"
}

running_pid() {  # prints the broker pid if OUR broker (this data dir's config) is alive
    [[ -f "$PIDFILE" ]] || return 1
    local pid; pid="$(<"$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # The pid may have been reused by an unrelated process after a crash: check its command line.
    local cmdline; cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *kafka.Kafka*"$CFG"* ]] || return 1
    echo "$pid"
}

running_bootstrap() {  # the address the running broker was configured with
    sed -n 's/^advertised.listeners=PLAINTEXT:\/\///p' "$CFG"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Class-data sharing: start-up is mostly class loading and JIT, and on 2 busy cores it halves
# (measured 15-20 s -> 9-11 s) when the broker's classes come from an archive. The first broker
# without one dumps it at exit into its data dir; `down` publishes it to lib/ atomically (two
# brokers may be dumping at once). Keyed by the JVM build, since an archive only fits the JVM
# that wrote it. KAFKA_CDS=0 turns this off.
cds_archive() { echo "$LIB/kafka-$(java -version 2>&1 | cksum | cut -d' ' -f1).jsa"; }

jvm_opts() {  # [broker]: the broker itself (may dump the CDS archive), not a tool
    local cds=""
    if [[ "${KAFKA_CDS:-1}" != 0 ]]; then
        local archive; archive="$(cds_archive)"
        if [[ -f "$archive" ]]; then cds="-XX:SharedArchiveFile=$archive"
        elif [[ "${1:-}" == broker ]]; then cds="-XX:ArchiveClassesAtExit=$DATA_DIR/kafka.jsa"; fi
    fi
    echo "-Xms128m -Xmx$HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError $cds" \
         "-Djava.awt.headless=true -Dlog4j2.configurationFile=$HERE/log4j2.properties -Dkafka.logs.dir=$LOGS" \
         "${KAFKA_JVM_OPTS:-}"
}

publish_cds() {  # after a clean stop: move the archive the broker dumped into lib/
    [[ -s "$DATA_DIR/kafka.jsa" ]] || return 0
    local archive; archive="$(cds_archive)"
    if [[ ! -f "$archive" ]] && cp "$DATA_DIR/kafka.jsa" "$archive.$$.tmp" 2>/dev/null; then
        mv -f "$archive.$$.tmp" "$archive"
    fi
    rm -f "$DATA_DIR/kafka.jsa" "$archive.$$.tmp"
}

log_tail() {
    if [[ -s "$LOGS/kafka.out" ]]; then echo "----- last lines of $LOGS/kafka.out -----"; tail -n 20 "$LOGS/kafka.out"; fi
    if [[ -s "$LOGS/server.log" ]]; then
        # The cause is usually an ERROR well above the last lines (shutdown noise follows it).
        if grep -qE '\] (ERROR|FATAL) ' "$LOGS/server.log"; then
            echo "----- errors in $LOGS/server.log -----"; grep -E '\] (ERROR|FATAL) ' "$LOGS/server.log" | tail -n 8
        fi
        echo "----- last lines of $LOGS/server.log -----"; tail -n 12 "$LOGS/server.log"
    fi
    return 0
}

# Waits until the broker answers a metadata request (not just an open port). Exit codes:
# 0 ready, 1 timed out, 2 the JVM died, 4 no kafka-python.
probe() {  # bootstrap pid timeout
    "$KAFKA_PYTHON" - "$@" <<'PY'
import logging, os, socket, sys, time
logging.disable(logging.CRITICAL)  # connection-refused warnings while the JVM boots are expected
bootstrap, pid, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
try:
    from kafka import KafkaAdminClient
except ImportError:
    print("the readiness probe needs kafka-python: set KAFKA_PYTHON to a Python that has it", file=sys.stderr)
    sys.exit(4)
host, port = bootstrap.rsplit(":", 1)
last = "port never opened"
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(2)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        time.sleep(0.2)
        continue
    try:
        left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
        with KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=min(left_ms, 5000),
                              request_timeout_ms=5000, client_id="riskgraph-kafka-probe") as admin:
            info = admin.describe_cluster()
        if info.get("brokers"):
            print(info.get("cluster_id", ""))
            sys.exit(0)
        last = "metadata lists no broker yet"
    except Exception as exc:  # any failure here means "not ready yet"; keep the last for the report
        last = f"{type(exc).__name__}: {exc}"
    time.sleep(0.2)
print(f"no answer from {bootstrap}: {last}", file=sys.stderr)
sys.exit(1)
PY
}

stop_pid() {  # pid; returns 1 if it had to be killed
    local pid="$1" waited=0 killed=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]; do
        if (( waited >= STOP_TIMEOUT * 10 )); then
            echo "kafka.sh: broker pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            killed=1
            break
        fi
        sleep 0.1; waited=$((waited + 1))
    done
    while kill -0 "$pid" 2>/dev/null && [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]; do sleep 0.1; done
    return $killed
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running pid=$pid bootstrap=$(running_bootstrap) data_dir=$DATA_DIR version=$KAFKA_VERSION"
        return 0
    fi
    echo "stopped bootstrap=$BOOTSTRAP data_dir=$DATA_DIR version=$KAFKA_VERSION"
    return 3
}

cmd_down() {
    local pid
    if pid="$(running_pid)"; then
        # A killed JVM may have left half an archive: publish only after a clean stop.
        if stop_pid "$pid"; then publish_cds; else rm -f "$DATA_DIR/kafka.jsa"; fi
        echo "kafka.sh: stopped broker pid $pid ($(running_bootstrap))"
    else
        echo "kafka.sh: no broker running from $DATA_DIR"
    fi
    rm -f "$PIDFILE"
}

cmd_up() {
    local pid
    if pid="$(running_pid)"; then
        local actual; actual="$(running_bootstrap)"
        [[ "$actual" == "$BOOTSTRAP" ]] || die "a broker from $DATA_DIR is already running on $actual (asked for $BOOTSTRAP): run 'down' first"
        probe "$BOOTSTRAP" "$pid" "$START_TIMEOUT" >/dev/null || { log_tail >&2; die "broker pid $pid is running but does not answer on $BOOTSTRAP"; }
        echo "kafka.sh: already running pid=$pid bootstrap=$BOOTSTRAP"
        return 0
    fi
    rm -f "$PIDFILE"
    port_in_use "$PORT" && die "port $PORT on 127.0.0.1 is already in use by another process (choose --port)"
    port_in_use "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT on 127.0.0.1 is already in use by another process (choose --controller-port)"
    command -v java >/dev/null || die "java (17 or newer) is needed to run Kafka $KAFKA_VERSION"
    "$KAFKA_PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("kafka") is None)' 2>/dev/null \
        || die "the readiness probe needs kafka-python: set KAFKA_PYTHON to a Python that has it (now '$KAFKA_PYTHON')"
    ensure_jars

    mkdir -p "$LOGS"
    sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$DATA_DIR|g" \
        "$HERE/server.properties" >"$CFG.tmp"
    mv "$CFG.tmp" "$CFG"

    # shellcheck disable=SC2046  # jvm_opts is a list of words on purpose
    if [[ ! -f "$DATA_DIR/kraft-logs/meta.properties" ]]; then
        # A random cluster id, formatted as Kafka's base64url UUID (22 chars). Like Kafka's own
        # Uuid.randomUuid(), never one starting with '-', which the tool would read as an option.
        local cluster_id="-"
        while [[ "$cluster_id" == -* ]]; do
            cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c 1-22)"
        done
        java $(jvm_opts) -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$CFG" \
            >"$LOGS/format.log" 2>&1 || { cat "$LOGS/format.log" >&2; die "formatting KRaft storage in $DATA_DIR/kraft-logs failed"; }
    fi

    local t0=$SECONDS
    : >>"$LOGS/kafka.out"
    # Own session (setsid) so a Ctrl-C in the calling terminal or test runner does not reach the
    # broker; the subshell exits at once, so the JVM is reparented and never left a zombie; it
    # must not inherit the lock (fd 9).
    # shellcheck disable=SC2046,SC2016  # word-split JVM flags; $$ is the inner bash's pid
    ( cd "$DATA_DIR" && exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        java $(jvm_opts broker) -cp "$LIB/*" kafka.Kafka "$CFG" >>"$LOGS/kafka.out" 2>&1 </dev/null 9>&- & )
    for _ in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
    pid="$(<"$PIDFILE")" || die "the broker did not start (no pid file)"

    local rc=0
    probe "$BOOTSTRAP" "$pid" "$START_TIMEOUT" >/dev/null || rc=$?
    case $rc in
        0) echo "kafka.sh: Kafka $KAFKA_VERSION up pid=$pid bootstrap=$BOOTSTRAP data_dir=$DATA_DIR ($((SECONDS - t0))s)" ;;
        2) log_tail >&2; rm -f "$PIDFILE" "$DATA_DIR/kafka.jsa"; die "the broker exited during start-up (logs in $LOGS)" ;;
        *) stop_pid "$pid" || true; rm -f "$PIDFILE" "$DATA_DIR/kafka.jsa"; log_tail >&2
           die "the broker did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (stopped it; logs in $LOGS)" ;;
    esac
}

lock() {  # one up/down at a time per data dir (two terminals, or a test run and a developer)
    mkdir -p "$DATA_DIR"
    exec 9>>"$DATA_DIR/.lock"
    flock -w "$((START_TIMEOUT + STOP_TIMEOUT + 60))" 9 || die "another kafka.sh holds $DATA_DIR/.lock"
}

case "$CMD" in
    up) lock; cmd_up ;;
    down) lock; cmd_down ;;
    status) cmd_status ;;
    jars) ensure_jars; echo "kafka.sh: Kafka $KAFKA_VERSION jars in $LIB" ;;
    -h|--help|help) usage ;;
    *) usage >&2; die "unknown command '$CMD' (up|down|status|jars)" ;;
esac
