#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft: broker + controller in one JVM) on 127.0.0.1 for
# development, CI and the integration tests. No Docker, no ZooKeeper: Java 17 and the jars
# that deploy/kafka/pom.xml fetches from Maven Central into deploy/kafka/lib/.
#
#   bash deploy/kafka/kafka.sh up       # fetch jars if missing, format, start, wait until it answers
#   bash deploy/kafka/kafka.sh status   # "running pid=... bootstrap=..." (exit 0) or "stopped ..." (exit 3)
#   bash deploy/kafka/kafka.sh down     # SIGTERM, wait, SIGKILL fallback
#   bash deploy/kafka/kafka.sh jars     # only fetch the jars
#   bash deploy/kafka/kafka.sh up --secure   # also SASL_SSL, SSL and SASL_PLAINTEXT listeners
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
# Secured listeners (opt-in; the PLAINTEXT listener and the controller stay as they are):
#   --secure                KAFKA_SECURE=1          add the listeners below
#   --sasl-ssl-port N       KAFKA_SASL_SSL_PORT     TLS + SASL PLAIN/SCRAM-SHA-256/512 (default 9094)
#   --ssl-port N            KAFKA_SSL_PORT          TLS, client certificate required  (default 9095)
#   --sasl-plaintext-port N KAFKA_SASL_PLAINTEXT_PORT  SASL without TLS               (default 9096)
#   KAFKA_SCRAM_USER (riskgraph), KAFKA_SCRAM_PASSWORD (random): the one SASL user, fixed
#   when the storage is formatted. A CA, the broker's and a client's certificate are made
#   with openssl in <data dir>/tls/ (ca.pem, broker.pem, client.pem, client.key; again when
#   the broker's expires), the user in <data dir>/sasl.credentials (user=, password=).
#   `status` then also prints sasl_ssl=, ssl=, sasl_plaintext= and sasl_user=.
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
SECURE="${KAFKA_SECURE:-0}"
SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-9094}"
SSL_PORT="${KAFKA_SSL_PORT:-9095}"
SASL_PLAINTEXT_PORT="${KAFKA_SASL_PLAINTEXT_PORT:-9096}"
if [[ -z "${KAFKA_PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then KAFKA_PYTHON="$REPO/.venv/bin/python"; else KAFKA_PYTHON=python3; fi
fi

die() { echo "kafka.sh: $*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -n 's/^# \{0,1\}//p'; }

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
CMD="$1"; shift
while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) PORT="${2:?--port needs a value}"; shift 2 ;;
        --controller-port) CONTROLLER_PORT="${2:?--controller-port needs a value}"; shift 2 ;;
        --data-dir) DATA_DIR="${2:?--data-dir needs a value}"; shift 2 ;;
        --timeout) START_TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
        --secure) SECURE=1; shift ;;
        --sasl-ssl-port) SASL_SSL_PORT="${2:?--sasl-ssl-port needs a value}"; shift 2 ;;
        --ssl-port) SSL_PORT="${2:?--ssl-port needs a value}"; shift 2 ;;
        --sasl-plaintext-port) SASL_PLAINTEXT_PORT="${2:?--sasl-plaintext-port needs a value}"; shift 2 ;;
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
[[ "$SECURE" == 0 || "$SECURE" == 1 ]] || die "KAFKA_SECURE must be 0 or 1, got '$SECURE'"
if [[ "$SECURE" == 1 ]]; then
    check_port --sasl-ssl-port "$SASL_SSL_PORT"
    check_port --ssl-port "$SSL_PORT"
    check_port --sasl-plaintext-port "$SASL_PLAINTEXT_PORT"
    [[ "$(printf '%s\n' "$PORT" "$CONTROLLER_PORT" "$SASL_SSL_PORT" "$SSL_PORT" "$SASL_PLAINTEXT_PORT" | sort -u | wc -l)" == 5 ]] \
        || die "--port, --controller-port, --sasl-ssl-port, --ssl-port and --sasl-plaintext-port must all differ ($PORT $CONTROLLER_PORT $SASL_SSL_PORT $SSL_PORT $SASL_PLAINTEXT_PORT)"
fi
[[ "$START_TIMEOUT" =~ ^[0-9]+$ && "$START_TIMEOUT" -gt 0 ]] || die "--timeout must be a positive whole number of seconds, got '$START_TIMEOUT'"
[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "KAFKA_STOP_TIMEOUT must be a whole number of seconds, got '$STOP_TIMEOUT'"
# The path is substituted into a properties file with sed: refuse what would corrupt either.
[[ "$DATA_DIR" != *[\|\&\\]* && "$DATA_DIR" != *$'\n'* ]] || die "--data-dir must not contain '|', '&', '\\' or newlines: '$DATA_DIR'"
DATA_DIR="$(realpath -m -- "$DATA_DIR")"
CFG="$DATA_DIR/server.properties"
LOGS="$DATA_DIR/logs"
PIDFILE="$DATA_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$PORT"
TLS_DIR="$DATA_DIR/tls"
CREDS="$DATA_DIR/sasl.credentials"
# What the rendered config advertises (compared on an `up` that finds the broker running).
ADVERTISED="PLAINTEXT://$BOOTSTRAP"
if [[ "$SECURE" == 1 ]]; then
    ADVERTISED+=",SASL_SSL://127.0.0.1:$SASL_SSL_PORT,SSL://127.0.0.1:$SSL_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PLAINTEXT_PORT"
fi

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

running_advertised() { sed -n 's/^advertised.listeners=//p' "$CFG"; }

running_listener() {  # NAME: host:port of that listener in the running broker's config
    running_advertised | tr ',' '\n' | sed -n "s|^$1://||p"
}

running_bootstrap() {  # the address the running broker was configured with
    running_listener PLAINTEXT
}

secure_status() {  # " sasl_ssl=... ssl=... sasl_plaintext=... sasl_user=..." for a secured config
    local name addr out=""
    for name in SASL_SSL SSL SASL_PLAINTEXT; do
        addr="$(running_listener "$name")"
        [[ -n "$addr" ]] && out+=" ${name,,}=$addr"
    done
    [[ -n "$out" && -f "$CREDS" ]] && out+=" sasl_user=$(sed -n 's/^user=//p' "$CREDS")"
    echo "$out"
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

# --secure: after the PLAINTEXT probe, one client per secured listener must get in (the TLS
# files, the SCRAM credentials in the metadata log and the JAAS entries all work). Exit codes
# as probe's; a failure prints the listener and the client's last error.
probe_secure() {  # timeout
    RG_SASL_SSL="127.0.0.1:$SASL_SSL_PORT" RG_SSL="127.0.0.1:$SSL_PORT" RG_SASL_PLAINTEXT="127.0.0.1:$SASL_PLAINTEXT_PORT" \
    RG_TLS_DIR="$TLS_DIR" RG_USER="$SCRAM_USER" RG_PASSWORD="$SCRAM_PASSWORD" "$KAFKA_PYTHON" - "$@" <<'PY'
import logging, os, sys, time
logging.disable(logging.CRITICAL)
from kafka import KafkaAdminClient
deadline = time.monotonic() + float(sys.argv[1])
env, tls = os.environ, os.environ["RG_TLS_DIR"]
sasl = dict(sasl_plain_username=env["RG_USER"], sasl_plain_password=env["RG_PASSWORD"])
clients = [
    ("SASL_SSL", dict(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", ssl_cafile=f"{tls}/ca.pem", **sasl)),
    ("SSL", dict(security_protocol="SSL", ssl_cafile=f"{tls}/ca.pem", ssl_certfile=f"{tls}/client.pem",
                 ssl_keyfile=f"{tls}/client.key")),
    ("SASL_PLAINTEXT", dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", **sasl)),
]
for name, kw in clients:
    last = "no attempt"
    while True:
        try:
            left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            with KafkaAdminClient(bootstrap_servers=env["RG_" + name], bootstrap_timeout_ms=min(left_ms, 5000),
                                  request_timeout_ms=5000, client_id="riskgraph-kafka-probe", **kw) as admin:
                if admin.describe_cluster().get("brokers"):
                    break
            last = "metadata lists no broker yet"
        except Exception as exc:  # keep the last failure for the report
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            print(f"the {name} listener on {env['RG_' + name]} does not let the probe in: {last}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.3)
PY
}

# --secure: a CA, the broker's certificate (127.0.0.1 and localhost) and a client certificate,
# all EC P-256 and valid 30 days, made with openssl into $TLS_DIR unless valid ones are there.
# broker.pem is the PEM keystore Kafka reads: key (PKCS#8), certificate, CA certificate.
make_tls() {
    local f ok=1
    for f in ca.pem broker.pem client.pem client.key; do [[ -s "$TLS_DIR/$f" ]] || ok=0; done
    if (( ok )); then
        for f in ca.pem broker.crt client.pem; do
            openssl x509 -checkend 86400 -noout -in "$TLS_DIR/$f" >/dev/null 2>&1 || ok=0
        done
    fi
    (( ok )) && return 0
    local tmp="$TLS_DIR.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    # (errexit does not act inside an `if !` subshell: every step says `|| exit 1` itself)
    if ! ( cd "$tmp" && umask 077 || exit 1
        cat >openssl.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = riskgraph
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[broker]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
        for f in ca broker client; do openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$f.key" || exit 1; done
        openssl req -new -x509 -config openssl.cnf -extensions ca -key ca.key -subj "/CN=riskgraph development CA" \
            -days 30 -sha256 -out ca.pem || exit 1
        for f in broker client; do
            openssl req -new -config openssl.cnf -key "$f.key" -subj "/CN=riskgraph-$f" -out "$f.csr" || exit 1
            openssl x509 -req -in "$f.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
                -days 30 -sha256 -extfile openssl.cnf -extensions "$f" -out "$f.crt" || exit 1
        done
        cat broker.key broker.crt ca.pem >broker.pem && mv client.crt client.pem && rm -f ./*.csr ca.key || exit 1
    ) >"$LOGS/tls.log" 2>&1; then
        cat "$LOGS/tls.log" >&2; rm -rf "$tmp"; die "openssl could not make the TLS certificates in $TLS_DIR"
    fi
    rm -rf "$TLS_DIR"; mv "$tmp" "$TLS_DIR"
}

# --secure: the one SASL user. Fixed when the storage is formatted (SCRAM credentials go into
# the metadata log then); kept in $CREDS so that later `up`s render the same PLAIN entry.
sasl_credentials() {  # sets SCRAM_USER, SCRAM_PASSWORD
    local formatted=0 user="" password=""
    [[ -f "$DATA_DIR/kraft-logs/meta.properties" ]] && formatted=1
    if [[ -f "$CREDS" ]]; then
        user="$(sed -n 's/^user=//p' "$CREDS")"; password="$(sed -n 's/^password=//p' "$CREDS")"
    elif (( formatted )); then
        die "the storage in $DATA_DIR was formatted without --secure, so it has no SASL user: use a fresh --data-dir for a secured broker"
    fi
    if (( formatted )); then
        [[ -z "${KAFKA_SCRAM_USER:-}" || "$KAFKA_SCRAM_USER" == "$user" ]] \
            || die "the storage in $DATA_DIR has the SASL user '$user', not KAFKA_SCRAM_USER='$KAFKA_SCRAM_USER' (users are fixed at format time: use a fresh --data-dir)"
        [[ -z "${KAFKA_SCRAM_PASSWORD:-}" || "$KAFKA_SCRAM_PASSWORD" == "$password" ]] \
            || die "the storage in $DATA_DIR was formatted with another password for '$user' than KAFKA_SCRAM_PASSWORD (see $CREDS, or use a fresh --data-dir)"
    fi
    SCRAM_USER="${KAFKA_SCRAM_USER:-${user:-riskgraph}}"
    SCRAM_PASSWORD="${KAFKA_SCRAM_PASSWORD:-$password}"
    [[ -n "$SCRAM_PASSWORD" ]] || SCRAM_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr '+/' '._')"
    # Both go into a properties file (sed), a JAAS entry ("...") and --add-scram's [name=,password=].
    [[ "$SCRAM_USER" =~ ^[A-Za-z0-9._-]+$ ]] || die "KAFKA_SCRAM_USER may only hold letters, digits, '.', '_' and '-', got '$SCRAM_USER'"
    [[ "$SCRAM_PASSWORD" =~ ^[A-Za-z0-9._~-]{8,}$ ]] \
        || die "KAFKA_SCRAM_PASSWORD must be 8 or more letters, digits, '.', '_', '~' or '-'"
    ( umask 077; printf 'user=%s\npassword=%s\n' "$SCRAM_USER" "$SCRAM_PASSWORD" >"$CREDS.tmp" )
    mv "$CREDS.tmp" "$CREDS"
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
        echo "running pid=$pid bootstrap=$(running_bootstrap) data_dir=$DATA_DIR version=$KAFKA_VERSION$(secure_status)"
        return 0
    fi
    local extra=""
    [[ "$SECURE" == 1 ]] && extra=" sasl_ssl=127.0.0.1:$SASL_SSL_PORT ssl=127.0.0.1:$SSL_PORT sasl_plaintext=127.0.0.1:$SASL_PLAINTEXT_PORT"
    echo "stopped bootstrap=$BOOTSTRAP data_dir=$DATA_DIR version=$KAFKA_VERSION$extra"
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
        actual="$(running_advertised)"
        [[ "$actual" == "$ADVERTISED" ]] || die "a broker from $DATA_DIR is already running with the listeners $actual (asked for $ADVERTISED): run 'down' first"
        probe "$BOOTSTRAP" "$pid" "$START_TIMEOUT" >/dev/null || { log_tail >&2; die "broker pid $pid is running but does not answer on $BOOTSTRAP"; }
        if [[ "$SECURE" == 1 ]]; then
            sasl_credentials
            probe_secure "$START_TIMEOUT" || die "broker pid $pid is running but a secured listener refuses the probe"
        fi
        echo "kafka.sh: already running pid=$pid bootstrap=$BOOTSTRAP"
        return 0
    fi
    rm -f "$PIDFILE"
    port_in_use "$PORT" && die "port $PORT on 127.0.0.1 is already in use by another process (choose --port)"
    port_in_use "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT on 127.0.0.1 is already in use by another process (choose --controller-port)"
    if [[ "$SECURE" == 1 ]]; then
        port_in_use "$SASL_SSL_PORT" && die "port $SASL_SSL_PORT on 127.0.0.1 is already in use by another process (choose --sasl-ssl-port)"
        port_in_use "$SSL_PORT" && die "port $SSL_PORT on 127.0.0.1 is already in use by another process (choose --ssl-port)"
        port_in_use "$SASL_PLAINTEXT_PORT" && die "port $SASL_PLAINTEXT_PORT on 127.0.0.1 is already in use by another process (choose --sasl-plaintext-port)"
        command -v openssl >/dev/null || die "openssl is needed to make the TLS certificates of a --secure broker"
    fi
    command -v java >/dev/null || die "java (17 or newer) is needed to run Kafka $KAFKA_VERSION"
    "$KAFKA_PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("kafka") is None)' 2>/dev/null \
        || die "the readiness probe needs kafka-python: set KAFKA_PYTHON to a Python that has it (now '$KAFKA_PYTHON')"
    ensure_jars

    mkdir -p "$LOGS"
    sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$DATA_DIR|g" \
        "$HERE/server.properties" >"$CFG.tmp"
    local scram_args=()
    if [[ "$SECURE" == 1 ]]; then
        sasl_credentials
        make_tls
        # The secured listeners join the base template's; the controller and inter-broker
        # traffic stay PLAINTEXT. The rendered file holds the PLAIN password: owner only.
        chmod 600 "$CFG.tmp"
        sed -i -e "s|^listeners=.*|listeners=${ADVERTISED},CONTROLLER://127.0.0.1:$CONTROLLER_PORT|" \
               -e "s|^advertised.listeners=.*|advertised.listeners=$ADVERTISED|" \
               -e "s|^listener.security.protocol.map=.*|listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT|" \
               "$CFG.tmp"
        sed -e "s|@TLS_DIR@|$TLS_DIR|g" -e "s|@SCRAM_USER@|$SCRAM_USER|g" -e "s|@SCRAM_PASSWORD@|$SCRAM_PASSWORD|g" \
            -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@SASL_SSL_PORT@|$SASL_SSL_PORT|g" \
            -e "s|@SSL_PORT@|$SSL_PORT|g" -e "s|@SASL_PLAINTEXT_PORT@|$SASL_PLAINTEXT_PORT|g" \
            "$HERE/server-secure.properties" >>"$CFG.tmp"
        scram_args=(--add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]"
                    --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]")
    fi
    mv "$CFG.tmp" "$CFG"

    # shellcheck disable=SC2046  # jvm_opts is a list of words on purpose
    if [[ ! -f "$DATA_DIR/kraft-logs/meta.properties" ]]; then
        # A random cluster id, formatted as Kafka's base64url UUID (22 chars). Like Kafka's own
        # Uuid.randomUuid(), never one starting with '-', which the tool would read as an option.
        local cluster_id="-"
        while [[ "$cluster_id" == -* ]]; do
            cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c 1-22)"
        done
        java $(jvm_opts) -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$CFG" "${scram_args[@]}" \
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
    if [[ $rc == 0 && "$SECURE" == 1 ]]; then
        probe_secure "$START_TIMEOUT" || {
            stop_pid "$pid" || true; rm -f "$PIDFILE" "$DATA_DIR/kafka.jsa"; log_tail >&2
            die "the broker answers on $BOOTSTRAP but a secured listener refuses the probe (stopped it; logs in $LOGS)"; }
    fi
    case $rc in
        0) echo "kafka.sh: Kafka $KAFKA_VERSION up pid=$pid bootstrap=$BOOTSTRAP data_dir=$DATA_DIR$(secure_status) ($((SECONDS - t0))s)" ;;
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
