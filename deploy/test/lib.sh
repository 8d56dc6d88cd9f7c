# Shared by deploy/test/*.sh: the docker client, assertions, waiting.
# Debian's docker.io client (with BuildKit built in) is preferred over any
# newer client on PATH that would want the buildx plugin for `docker build`.
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}"
export DOCKER_BUILDKIT=1
IMAGE="${IMAGE:-sonde:ci}"
# Every capability the container needs, and why:
#   NET_RAW, NET_ADMIN   AF_PACKET sockets, fanout, promiscuous mode
#   CHOWN                hand DATA_DIR to SONDE_USER before the drop
#   SETUID, SETGID       the drop itself (setgroups, setgid, setuid)
# Not DAC_OVERRIDE: sonde opens DATA_DIR only after the drop, as SONDE_USER,
# so a restart on a volume SONDE_USER already owns needs no override.
CAPS=(--cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN --cap-add CHOWN
	--cap-add SETUID --cap-add SETGID)

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every second.
wait_for() {
	local secs=$1 what=$2; shift 2
	for _ in $(seq "$secs"); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 1
	done
	fail "timed out after ${secs}s waiting for $what"
}

health_is() { [ "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$1")" = "$2" ]; }
