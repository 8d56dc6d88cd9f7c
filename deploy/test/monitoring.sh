#!/usr/bin/env bash
# The monitoring stack against a live sensor. Everything runs inside two
# network namespaces this script makes: sonde (with the eBPF prefilter, so
# its kernel counters exist) captures the loopback of the first and one end
# of a veth pair (198.18.0.1/30) whose other end (198.18.0.2/30) is in the
# second; Prometheus scrapes 127.0.0.1 in the first, and sonde offloads its
# ring files to a MinIO on that loopback (so the object storage panels have
# data). Nothing leaves them.
# deploy/test/trafficgen serves TCP and DNS on 198.18.0.1 and its client in
# the peer namespace connects and queries across the veth, so every TCP,
# DNS and UDP panel has data. Checks:
#   promtool check config/rules and the rules' unit tests;
#   every dashboard and recording-rule query returns a number (not NaN);
#   each alert fires when its condition is provoked: a SYN flood from the
#   peer (hping3: SondeAnomalyDetected{kind="syn_flood"}), a small ring that
#   evicts for size (retention), a full data volume (volume, write errors,
#   drops), the captured interface down (capture stopped), sonde killed
#   (target down; the fleet in front of it then reports its member down).
#   sonde fleet runs in front of the sensor (tokens both ways) and a window
#   is pulled through it every second, so the fleet service's panels have
#   data. The rules run with `for: 0s` and 1 s intervals here.
# Needs: root, iproute2, curl, prometheus (promtool), hping3, capinfos, go, minio (.ci/run builds it).
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
root=$(cd ../.. && pwd)
ns=sonde-ci-mon peer=sonde-ci-mon-peer
work=$(mktemp -d /tmp/sonde-ci-mon.XXXXXX)
sonde_pid="" prom_pid="" traffic_pid="" filler_pid="" tg_server_pid="" tg_client_pid="" minio_pid=""
fleet_pid="" pull_pid=""
cleanup() {
	if [ "${ok:-}" != 1 ]; then
		echo "--- sonde log (tail)"; tail -20 "$work/sonde.log" 2>/dev/null || true
		echo "--- prometheus log (tail)"; tail -20 "$work/prometheus.log" 2>/dev/null || true
		echo "--- minio log (tail)"; tail -20 "$work/minio.log" 2>/dev/null || true
		echo "--- fleet log (tail)"; tail -20 "$work/fleet.log" 2>/dev/null || true
	fi
	for p in $pull_pid $fleet_pid $tg_client_pid $tg_server_pid $filler_pid $traffic_pid $prom_pid $sonde_pid $minio_pid; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	umount "$work/data" 2>/dev/null || true
	ip netns del "$peer" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
ip netns del "$peer" 2>/dev/null || true
ip netns del "$ns" 2>/dev/null || true

(cd ../prometheus && promtool check config prometheus.yml && promtool check rules sonde.rules.yml \
	&& promtool test rules tests/sonde.rules.test.yml)
pass "promtool check config, check rules, test rules"

(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$work/sonde" ./cmd/sonde)
go test -c -o "$work/deploy.test" .
go build -o "$work/trafficgen" ./trafficgen

ip netns add "$ns"
ip netns add "$peer"
ip -n "$ns" link set lo up
ip -n "$peer" link set lo up
ip -n "$ns" link add cap0 type veth peer name cap1 netns "$peer"
ip -n "$ns" addr add 198.18.0.1/30 dev cap0
ip -n "$peer" addr add 198.18.0.2/30 dev cap1
ip -n "$ns" link set cap0 up
ip -n "$peer" link set cap1 up
mkdir -p "$work/data" "$work/prom"
mount -t tmpfs -o size=32m tmpfs "$work/data"
in_ns() { ip netns exec "$ns" "$@"; }

# Object storage, so that the offload panels have data: a MinIO in the
# namespace (.ci/run installs it) and a bucket made with a signed PUT.
minio=$(command -v minio || echo "$(go env GOPATH)/bin/minio")
[ -x "$minio" ] || fail "minio not found on PATH or in GOPATH/bin: .ci/run installs it"
export AWS_ACCESS_KEY_ID=sonde-ci AWS_SECRET_ACCESS_KEY=sonde-ci-secret
mkdir -p "$work/minio"
ip netns exec "$ns" env MINIO_ROOT_USER="$AWS_ACCESS_KEY_ID" MINIO_ROOT_PASSWORD="$AWS_SECRET_ACCESS_KEY" \
	MINIO_BROWSER=off MINIO_UPDATE=off "$minio" server --quiet --address 127.0.0.1:9000 "$work/minio" \
	>"$work/minio.log" 2>&1 &
minio_pid=$!
wait_for 60 "minio live" in_ns curl -sf http://127.0.0.1:9000/minio/health/live
in_ns curl -sf -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
	http://127.0.0.1:9000/sonde-ci || fail "could not create the bucket sonde-ci in minio"

# Tokens both ways, as deployed: the sensor's API, and the fleet's own.
fleet_token=fleet-ci-token-0123456789
echo sensor-ci-token-0123456789 >"$work/api-token"
echo "$fleet_token" >"$work/fleet-token"
ip netns exec "$ns" "$work/sonde" run --interface lo,cap0 --data-dir "$work/data" --listen 127.0.0.1:9750 \
	--api-token-file "$work/api-token" --workers 1 --capture-ring-bytes 4MiB --ring-max-bytes 1MiB --file-max-bytes 64KiB \
	--file-max-duration 1s --min-free-percent 1 --prefilter ebpf --window 2s \
	--s3-endpoint http://127.0.0.1:9000 --s3-bucket sonde-ci --s3-region us-east-1 \
	--log-format json >"$work/sonde.log" 2>&1 &
sonde_pid=$!
wait_for 30 "sonde /api/ready" in_ns curl -sf http://127.0.0.1:9750/api/ready
# Read the whole page before grepping: under pipefail, `curl | grep -q` fails
# when grep exits at its match while curl still writes (/metrics is > 64 KiB).
in_ns curl -sf http://127.0.0.1:9750/metrics >"$work/metrics.txt"
grep -q '^sonde_prefilter_packets_total{interface="cap0"}' "$work/metrics.txt" \
	|| fail "no sonde_prefilter_* series: the eBPF prefilter did not load (see sonde.log)"
grep -q '^sonde_offload_queue_files ' "$work/metrics.txt" \
	|| fail "no sonde_offload_* series: offload to minio is not on (see sonde.log)"

# sonde fleet in front of the sensor, on the address the shipped
# Prometheus configuration scrapes (job sonde-fleet).
mkdir -p "$work/fleet"
ip netns exec "$ns" "$work/sonde" fleet --listen 127.0.0.1:9751 --members 127.0.0.1:9750 \
	--member-token-file "$work/api-token" --api-token-file "$work/fleet-token" \
	--member-poll-interval 1s --data-dir "$work/fleet" --log-format json >"$work/fleet.log" 2>&1 &
fleet_pid=$!
wait_for 30 "fleet /api/ready" in_ns curl -sf http://127.0.0.1:9751/api/ready

# The shipped config and rules, made fast for a test: 1 s scrapes and
# evaluations, no `for:` wait.
cp ../prometheus/prometheus.yml ../prometheus/sonde.rules.yml "$work/"
sed -i 's/\(scrape_interval\|evaluation_interval\): 15s/\1: 1s/' "$work/prometheus.yml"
sed -i 's/^\(\s*\)for: .*/\1for: 0s/' "$work/sonde.rules.yml"
promtool check config "$work/prometheus.yml" >/dev/null
ip netns exec "$ns" prometheus --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/prom" \
	--web.listen-address 127.0.0.1:9090 --log.level warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
wait_for 30 "prometheus ready" in_ns curl -sf http://127.0.0.1:9090/-/ready

# Traffic on loopback only: the sensor's own metrics, 20 times a second.
ip netns exec "$ns" sh -c 'while :; do curl -s -o /dev/null http://127.0.0.1:9750/metrics; sleep 0.05; done' &
traffic_pid=$!
# TCP and DNS across the veth: server here, client in the peer namespace.
ip netns exec "$ns" "$work/trafficgen" -serve 198.18.0.1 >"$work/tg-server.log" 2>&1 &
tg_server_pid=$!
sleep 0.5
ip netns exec "$peer" "$work/trafficgen" -target 198.18.0.1 >"$work/tg-client.log" 2>&1 &
tg_client_pid=$!

# A user pulling the last seconds through the fleet, once a second, so its
# request, latency and merge panels have data; the first answer must be a
# pcapng that capinfos reads, with packets in it.
pull() {
	in_ns curl -sf -H "Authorization: Bearer $fleet_token" -o "$1" \
		"http://127.0.0.1:9751/api/v1/pcap?from=$(( $(date +%s) - 5 ))&to=$(date +%s)"
}
wait_for 30 "a window through the fleet" pull "$work/fleet.pcapng"
info=$(capinfos -t -c -M "$work/fleet.pcapng") || fail "capinfos cannot read the fleet's answer: $info"
grep -q 'pcapng' <<<"$info" || fail "the fleet's answer is not a pcapng: $info"
packets=$(awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}' <<<"$info")
[ "${packets:-0}" -gt 0 ] || fail "the fleet's pcapng holds no packets: $info"
(while :; do pull /dev/null || true; sleep 1; done) &
pull_pid=$!

export SONDE_PROMETHEUS_URL=http://127.0.0.1:9090
t() { in_ns env SONDE_PROMETHEUS_URL="$SONDE_PROMETHEUS_URL" SONDE_EXPECT_ALERTS="${2:-}" "$work/deploy.test" -test.count=1 -test.v -test.run "$1"; }
sleep 10
t 'TestQueriesReturnData$'

# A SYN flood from the peer to a closed port: half-open SYNs far above
# syn_flood_per_second (50) with none completing.
ip netns exec "$peer" timeout 8 hping3 -q -S -p 9 -i u2000 198.18.0.1 >/dev/null 2>&1 || true
t 'TestAlertsFire$' 'SondeAnomalyDetected{kind="syn_flood"}'
t 'TestAlertsFire$' SondeRingRetentionShort

# Keep the data volume full with a file sonde does not own: whatever sonde
# frees by evicting its own files is taken again, so its writes keep failing
# and packets are dropped (reason="write_error").
sh -c 'while :; do cat /dev/zero >>"$1" 2>/dev/null; sleep 0.1; done' filler "$work/data/filler" &
filler_pid=$!
t 'TestAlertsFire$' SondeDataVolumeNearlyFull,SondeRingWriteErrors,SondeCaptureDrops
kill "$filler_pid"; wait "$filler_pid" 2>/dev/null || true; filler_pid=""
rm -f "$work/data/filler"

ip -n "$ns" link set cap0 down
t 'TestAlertsFire$' SondeCaptureStopped

kill "$sonde_pid"; wait "$sonde_pid" || true; sonde_pid=""
t 'TestAlertsFire$' SondeTargetDown,SondeFleetMemberDown
ok=1
pass "monitoring: queries return data, every alert fires when provoked"
