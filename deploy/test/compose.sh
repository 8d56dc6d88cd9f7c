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
