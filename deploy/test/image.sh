#!/usr/bin/env bash
# Runs the built image as a user would, with only the capabilities it needs,
# in a network namespace of its own (--network none: loopback only, so the
# test sees no host interface and sends nothing beyond 127.0.0.1), and checks
# what the Dockerfile promises: healthy, running as 65532 with no capability
# after setup, pcap files on the volume, and a restart on the same volume.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

name=sonde-ci-image vol=sonde-ci-image-data
cleanup() { "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true; "$DOCKER" volume rm -f "$vol" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

start() {
	"$DOCKER" run -d --name "$name" --network none "${CAPS[@]}" \
		--read-only --tmpfs /tmp --security-opt no-new-privileges:true \
		-v "$vol:/data" --health-interval 2s --health-start-period 2s \
		"$IMAGE" run --interface lo --workers 1 --capture-ring-bytes 4MiB --file-max-duration 2s >/dev/null
	wait_for 60 "container $name healthy" health_is "$name" healthy
}

for round in first restart; do
	start
	pass "$round start: healthy (HEALTHCHECK /sonde healthcheck)"
	pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$name")
	uid=$(awk '/^Uid:/ {print $3}' "/proc/$pid/status")
	capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
	nnp=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status")
	[ "$uid" = 65532 ] || fail "main process runs as uid $uid, want 65532"
	[ "$capeff" = 0000000000000000 ] || fail "main process CapEff $capeff, want none"
	[ "$nnp" = 1 ] || fail "main process lacks no_new_privs"
	pass "$round start: pid $pid runs as uid 65532, CapEff 0, no_new_privs"
	health=$(nsenter -t "$pid" -n curl -sf http://127.0.0.1:9750/api/health)
	echo "$health" | grep -q '"uid":65532' || fail "/api/health: $health"
	echo "$health" | grep -q '"capabilities_effective":"0000000000000000"' || fail "/api/health: $health"
	# Loopback traffic inside the container's own namespace only.
	for _ in $(seq 20); do nsenter -t "$pid" -n curl -sf -o /dev/null http://127.0.0.1:9750/metrics; done
	nsenter -t "$pid" -n curl -sf http://127.0.0.1:9750/api/ready >/dev/null || fail "/api/ready not 200"
	dir=$("$DOCKER" volume inspect -f '{{.Mountpoint}}' "$vol")
	wait_for 20 "a published pcap file on the volume" sh -c "ls '$dir' | grep -q '_lo_0\.pcap\$'"
	owner=$(stat -c %u "$dir")
	[ "$owner" = 65532 ] || fail "/data owned by $owner, want 65532"
	pass "$round start: $(ls "$dir" | grep -c '\.pcap$') pcap file(s) on the volume, owned by 65532"
	caps=$("$DOCKER" inspect -f '{{.HostConfig.CapAdd}}' "$name")
	case "$caps" in *DAC_OVERRIDE*) fail "container has DAC_OVERRIDE: $caps" ;; esac
	if [ "$round" = restart ]; then
		# The ring SONDE_USER wrote in the first round, reopened without
		# DAC_OVERRIDE: its files are still there and new ones join them.
		for f in $first_files; do [ -e "$dir/$f" ] || fail "restart lost $f"; done
		wait_for 20 "a pcap file published after the restart" sh -c \
			"[ \$(ls '$dir' | grep -c '\.pcap\$') -gt $(echo "$first_files" | wc -w) ]"
		pass "restart on the same volume without DAC_OVERRIDE ($caps): the first round's files kept, new ones published"
	fi
	"$DOCKER" stop -t 10 "$name" >/dev/null
	first_files=$(ls "$dir" | grep '\.pcap$' || true)
	code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$name")
	[ "$code" = 0 ] || fail "exit status $code after docker stop, want 0"
	"$DOCKER" rm "$name" >/dev/null
done

version=$("$DOCKER" run --rm "$IMAGE" version) && grep -q sonde <<<"$version" || fail "docker run IMAGE version"
"$DOCKER" run --rm --entrypoint /bin/sh "$IMAGE" -c true >/dev/null 2>&1 && fail "the image has a shell"
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
[ "$size" -lt $((25 * 1000 * 1000)) ] || fail "image is $size bytes, want < 25 MB"
pass "image $IMAGE is $size bytes ($(( size / 1000 )) kB), no shell"
