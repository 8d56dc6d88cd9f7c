#!/usr/bin/env bash
# docker-compose.yml: validates with and without the monitoring profile, and
# the sensor service starts from it and turns healthy with the built image,
# capturing the host's loopback only (SONDE_INTERFACES=lo).
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/test/lib.sh
export COMPOSE_PROJECT_NAME=sonde-ci
export SONDE_IMAGE="$IMAGE" SONDE_INTERFACES=lo SONDE_WORKERS=1 SONDE_CAPTURE_RING_BYTES=4MiB SONDE_LISTEN=127.0.0.1:9750
cleanup() { docker-compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

docker-compose config -q
docker-compose --profile monitoring config -q
docker-compose --profile fleet config -q
# docker-compose 1.x lists the services of every profile here, 2.x only
# the active ones: fleet may or may not be listed.
services=$(docker-compose --profile monitoring config --services | sort | tr '\n' ' ')
[ "${services/fleet /}" = "alertmanager grafana prometheus sensor " ] || fail "services: $services"
fleet=$(docker-compose --profile fleet config)
grep -q 'SONDE_FLEET_MEMBERS: 127.0.0.1:9750' <<<"$fleet" && grep -q "user: '\?65532:65532" <<<"$fleet" \
	|| fail "compose fleet service: members or user not as documented"
pass "docker-compose config (default, monitoring and fleet profiles)"

cleanup
docker-compose up -d --no-build sensor
id=$(docker-compose ps -q sensor)
wait_for 90 "compose sensor healthy" health_is "$id" healthy
pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$id")
uid=$(awk '/^Uid:/ {print $3}' "/proc/$pid/status")
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] && [ "$capeff" = 0000000000000000 ] || fail "compose sensor runs as uid $uid with CapEff $capeff"
ro=$("$DOCKER" inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}} {{.HostConfig.SecurityOpt}}' "$id")
[ "$ro" = "true host [no-new-privileges:true]" ] || fail "compose sensor host config: $ro"
# The whole page first: under pipefail `curl | grep -q` fails when grep exits
# at its match while curl still writes (/metrics is > 64 KiB).
metrics=$(curl -sf http://127.0.0.1:9750/metrics)
grep -q '^sonde_capture_up{interface="lo"} 1' <<<"$metrics" || fail "sonde_capture_up{interface=lo} is not 1"
pass "compose sensor healthy, uid 65532, CapEff 0, read-only, host network, capturing lo"

# The fleet profile, live: the sensor with an API token (through an override
# file, as a user would add one), the fleet in front of it with the sensor's
# token and its own; a window asked of the fleet comes back as one pcapng
# whose packets are attributed to the sensor's node and interface.
cleanup
tokens=$(mktemp -d)
trap 'cleanup; rm -rf "$tokens"' EXIT
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$tokens/api-token"
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$tokens/fleet-token"
chmod 0755 "$tokens" && chmod 0644 "$tokens"/*
cat >"$tokens/override.yml" <<YAML
services:
  sensor:
    volumes:
      - $tokens/api-token:/etc/sonde/api-token:ro
YAML
export SONDE_API_TOKEN_FILE=/etc/sonde/api-token SONDE_NODE_NAME=ci-node SONDE_FILE_MAX_DURATION=1s
export SONDE_FLEET_MEMBER_TOKEN="$tokens/api-token" SONDE_FLEET_TOKEN="$tokens/fleet-token"
compose=(docker-compose -f docker-compose.yml -f "$tokens/override.yml" --profile fleet)
"${compose[@]}" up -d --no-build sensor fleet
wait_for 90 "compose sensor healthy" health_is "$("${compose[@]}" ps -q sensor)" healthy
wait_for 60 "compose fleet healthy" health_is "$("${compose[@]}" ps -q fleet)" healthy
fleet_get() { curl -sf -H "Authorization: Bearer $(cat "$tokens/fleet-token")" "http://127.0.0.1:9751$1"; }
members=$(fleet_get /api/v1/members)
grep -q '"status":"ok"' <<<"$members" && grep -q '"node":"ci-node"' <<<"$members" \
	|| fail "fleet members: $members"
curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9751/api/v1/members | grep -qx 401 \
	|| fail "the fleet answers /api/v1 without its token"
from=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for _ in $(seq 20); do curl -sf -o /dev/null http://127.0.0.1:9750/api/health; done
sleep 3 # the sensor publishes its files every second
to=$(date -u -d '+1 second' +%Y-%m-%dT%H:%M:%SZ)
pcapng=$tokens/window.pcapng
fleet_get "/api/v1/pcap?from=$from&to=$to" >"$pcapng" || fail "fleet /api/v1/pcap"
packets=$(capinfos -Tcr "$pcapng" | awk -F'\t' 'NR==1 {print $2}')
ifnames=$(tshark -r "$pcapng" -T fields -e frame.interface_name | sort -u | tr '\n' ' ')
[ "${packets:-0}" -gt 0 ] && [ "$ifnames" = "ci-node/lo " ] \
	|| fail "fleet window: $packets packets on interfaces '$ifnames'"
pass "compose fleet healthy in front of the compose sensor: $packets packets of ci-node/lo in one pcapng"
