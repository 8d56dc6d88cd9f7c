#!/usr/bin/env bash
# CI for deploy/ (called from .ci/run, as root on a fresh Debian machine):
# installs Docker, Compose, Prometheus and Helm from Debian and the Go module
# proxy; builds the real Dockerfile offline against local stand-in base
# images, for amd64 and arm64 (cross-compiled, inspected, and its offline
# analysis run under qemu-user against the amd64 image's); runs the
# amd64 image and the compose sensor; lints and strictly decodes the Helm
# chart and plain manifests; runs Prometheus against a live sensor in a
# network namespace (queries and alerts). Network tests touch only
# loopback and namespaces made here; everything is cleaned up.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/go/bin:$PATH"
HELM_VERSION=v3.22.0
start=$(date +%s)
step() { echo "== deploy: $* ($(( $(date +%s) - start ))s)"; }

step "install docker.io, docker-compose, busybox-static, prometheus, hping3"
apt-get install -y -q --no-install-recommends docker.io docker-compose busybox-static \
	ca-certificates curl iproute2 iptables prometheus hping3 file >/dev/null

dockerd_pid=""
cleanup() {
	[ -n "${arm64_job:-}" ] && kill "$arm64_job" 2>/dev/null || true
	docker image rm -f sonde:ci sonde:ci-amd64 sonde:ci-cross sonde:ci-cross-arm64 >/dev/null 2>&1 || true
	[ -n "$dockerd_pid" ] && kill "$dockerd_pid" 2>/dev/null || true
}
trap cleanup EXIT
if ! /usr/bin/docker info >/dev/null 2>&1; then
	step "start dockerd"
	dockerd >/tmp/sonde-ci-dockerd.log 2>&1 &
	dockerd_pid=$!
	for _ in $(seq 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
	/usr/bin/docker info >/dev/null || { tail -20 /tmp/sonde-ci-dockerd.log; exit 1; }
fi

# Helm through the Go module proxy, cached between runs; built in the
# background while the image builds.
helm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/sonde-tools/helm-$HELM_VERSION"
export HELM="$helm_dir/helm"
helm_job=""
if [ ! -x "$HELM" ]; then
	GOBIN="$helm_dir" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >/tmp/sonde-ci-helm.log 2>&1 &
	helm_job=$!
fi

step "stand-in base images"
bash deploy/docker/standin.sh
step "docker build (the real Dockerfile, stand-in bases)"
make image IMAGE=sonde:ci PLATFORMS=linux/amd64 \
	GO_IMAGE=sonde-standin/go:local RUNTIME_IMAGE=sonde-standin/static:local

# The arm64 image: the same Dockerfile cross-compiled (GOARCH in the builder
# stage, no RUN step in the runtime one, so no emulation), built in the
# background while the amd64 image is run, and checked for what it is:
# arm64 in its config, an aarch64 static ELF inside, under 25 MB.
step "docker build linux/arm64 (background)"
make image IMAGE=sonde:ci-cross PLATFORMS=linux/arm64 \
	GO_IMAGE=sonde-standin/go:local RUNTIME_IMAGE=sonde-standin/static:arm64 \
	>/tmp/sonde-ci-arm64.log 2>&1 &
arm64_job=$!

step "image run test"
IMAGE=sonde:ci bash deploy/test/image.sh
step "compose test"
IMAGE=sonde:ci bash deploy/test/compose.sh

step "arm64 image: architecture, ELF machine, size"
wait "$arm64_job" || { tail -40 /tmp/sonde-ci-arm64.log; exit 1; }
arm64_job=""
arm64=sonde:ci-cross-arm64
platform=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$arm64")
[ "$platform" = linux/arm64 ] || { echo "FAIL: $arm64 is $platform, want linux/arm64" >&2; exit 1; }
cid=$(docker create --platform linux/arm64 "$arm64")
docker cp "$cid:/sonde" /tmp/sonde-ci-arm64.bin
docker rm "$cid" >/dev/null
elf=$(file -b /tmp/sonde-ci-arm64.bin)
rm -f /tmp/sonde-ci-arm64.bin
case "$elf" in
*"ELF 64-bit LSB executable, ARM aarch64"*"statically linked"*) ;;
*) echo "FAIL: /sonde in $arm64: $elf" >&2; exit 1 ;;
esac
size=$(docker image inspect -f '{{.Size}}' "$arm64")
[ "$size" -lt $((25 * 1000 * 1000)) ] || { echo "FAIL: $arm64 is $size bytes, want < 25 MB" >&2; exit 1; }
echo "ok: $arm64: $platform, $size bytes; /sonde: $elf"

# The arm64 image run, under qemu-user (binfmt_misc, registered with the F
# flag so containers find the emulator): its offline analysis must equal the
# amd64 image's byte for byte. Capture itself cannot be run this way:
# qemu-user refuses SOL_PACKET socket options ("protocol not available").
step "arm64 image under qemu-user: analyze equals the amd64 image's"
apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null
binfmt=/proc/sys/fs/binfmt_misc
mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt"
[ -e "$binfmt/qemu-aarch64" ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$binfmt/register"
version=$(docker run --rm --platform linux/arm64 "$arm64" version)
case "$version" in *linux/arm64*) ;; *) echo "FAIL: $arm64 version: $version" >&2; exit 1 ;; esac
samples=(resp_1_benchmark.pcap mptcp-v1.pcapng edns-opts.pcap)
for f in "${samples[@]}"; do
	for img in "$arm64" sonde:ci; do
		plat=linux/amd64
		[ "$img" = "$arm64" ] && plat=linux/arm64
		docker run --rm --platform "$plat" -v "$PWD/cmd/sonde/testdata/analyze:/in:ro" "$img" \
			analyze --format json "/in/$f" >"/tmp/sonde-ci-analyze-${plat#linux/}.json"
	done
	cmp /tmp/sonde-ci-analyze-arm64.json /tmp/sonde-ci-analyze-amd64.json \
		|| { echo "FAIL: analyze $f differs between arm64 and amd64" >&2; exit 1; }
done
rm -f /tmp/sonde-ci-analyze-*.json
echo "ok: $arm64 runs under emulation ($version); analyze of ${samples[*]} byte-identical to amd64's"

if [ -n "$helm_job" ]; then
	step "waiting for helm $HELM_VERSION to build"
	wait "$helm_job" || { cat /tmp/sonde-ci-helm.log; exit 1; }
fi
step "helm lint, manifests in sync, strict decoding"
"$HELM" lint --strict deploy/helm/sonde
bash deploy/sync.sh --check
(cd deploy/test && go vet ./... && go test -count=1 -v -run 'Test(StrictDecode|HelmTemplate|HelmFleet|PlainManifests)' ./...)

step "monitoring against a live sensor"
bash deploy/test/monitoring.sh
step "deploy/ passed"
