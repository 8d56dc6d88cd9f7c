#!/usr/bin/env bash
# The monitoring stack against a live sensor. Everything runs inside a
# network namespace this script makes (sonde captures its loopback and a veth
# pair whose both ends stay inside it; Prometheus scrapes 127.0.0.1 there),
# so nothing leaves it. Checks:
#   promtool check config/rules and the rules' unit tests;
#   every dashboard and recording-rule query returns data (deploy/test);
#   each alert fires when its condition is provoked: a small ring that
#   evicts for size (retention), a full data volume (volume, write errors,
#   drops), the captured interface down (capture stopped), sonde killed
#   (target down). The rules run with `for: 0s` and 1 s intervals here.
# Needs: root, iproute2, curl, prometheus (promtool), go.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
root=$(cd ../.. && pwd)
ns=sonde-ci-mon
work=$(mktemp -d /tmp/sonde-ci-mon.XXXXXX)
sonde_pid="" prom_pid="" traffic_pid="" filler_pid=""
cleanup() {
	if [ "${ok:-}" != 1 ]; then
		echo "--- sonde log (tail)"; tail -20 "$work/sonde.log" 2>/dev/null || true
		echo "--- prometheus log (tail)"; tail -20 "$work/prometheus.log" 2>/dev/null || true
	fi
	for p in $filler_pid $traffic_pid $prom_pid $sonde_pid; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	umount "$work/data" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
ip netns del "$ns" 2>/dev/null || true

(cd ../prometheus && promtool check config prometheus.yml && promtool check rules sonde.rules.yml \
	&& promtool test rules tests/sonde.rules.test.yml)
pass "promtool check config, check rules, test rules"

(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$work/sonde" ./cmd/sonde)
go test -c -o "$work/deploy.test" .

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add cap0 type veth peer name cap1
ip -n "$ns" link set cap0 up
ip -n "$ns" link set cap1 up
mkdir -p "$work/data" "$work/prom"
mount -t tmpfs -o size=32m tmpfs "$work/data"
in_ns() { ip netns exec "$ns" "$@"; }

ip netns exec "$ns" "$work/sonde" run --interface lo,cap0 --data-dir "$work/data" --listen 127.0.0.1:9750 \
	--workers 1 --capture-ring-bytes 4MiB --ring-max-bytes 1MiB --file-max-bytes 64KiB \
	--file-max-duration 1s --min-free-percent 1 --log-format json >"$work/sonde.log" 2>&1 &
sonde_pid=$!
wait_for 30 "sonde /api/ready" in_ns curl -sf http://127.0.0.1:9750/api/ready

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

export SONDE_PROMETHEUS_URL=http://127.0.0.1:9090
t() { in_ns env SONDE_PROMETHEUS_URL="$SONDE_PROMETHEUS_URL" SONDE_EXPECT_ALERTS="${2:-}" "$work/deploy.test" -test.count=1 -test.v -test.run "$1"; }
sleep 10
t 'TestQueriesReturnData$'
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
t 'TestAlertsFire$' SondeTargetDown
ok=1
pass "monitoring: queries return data, every alert fires when provoked"
