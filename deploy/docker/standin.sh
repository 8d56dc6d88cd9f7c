#!/usr/bin/env bash
# Builds local stand-ins for the Dockerfile's two base images, so CI can build
# the real Dockerfile with no container registry:
#   sonde-standin/go:local         GO_IMAGE: this machine's own Go toolchain
#                                  (/usr/local/go is static), busybox for the
#                                  RUN steps' shell, CA certificates for the
#                                  module proxy.
#   sonde-standin/static:local     RUNTIME_IMAGE: what distroless/static
#   sonde-standin/static:arm64     holds and sonde uses: CA certificates,
#                                  passwd/group with nonroot 65532, /tmp.
# Needs docker, busybox-static and ca-certificates (Debian packages).
set -euo pipefail

GOROOT_DIR="${GOROOT_DIR:-/usr/local/go}"
# Debian's docker.io client (BuildKit built in), as deploy/test/lib.sh: a
# newer client on PATH would want the buildx plugin for `docker build`.
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

busybox=$(command -v busybox)
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || {
	echo "standin: $busybox is not static (apt-get install busybox-static)" >&2; exit 1; }

# The runtime's files, shared by both stand-ins.
rt="$work/runtime"
mkdir -p "$rt/etc/ssl/certs" "$rt/tmp" "$rt/home/nonroot"
chmod 1777 "$rt/tmp"
cp /etc/ssl/certs/ca-certificates.crt "$rt/etc/ssl/certs/"
cat > "$rt/etc/passwd" <<'P'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
P
cat > "$rt/etc/group" <<'G'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
G
chown 65532:65532 "$rt/home/nonroot"
tar -C "$rt" -cf "$work/runtime.tar" .
"$DOCKER" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'USER 65532:65532' \
	"$work/runtime.tar" sonde-standin/static:local >/dev/null
# The arm64 runtime must say arm64 in its config, or BuildKit, building for
# linux/arm64, passes over the local image and asks a registry for one.
# docker import (20.10) records the daemon's own architecture whatever
# --platform says, so this one is built: FROM scratch and one ADD, no RUN
# step, so no emulation. ADD unpacks the tar keeping its owners (65532).
cat > "$work/Dockerfile" <<'D'
FROM scratch
ADD runtime.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
D
DOCKER_BUILDKIT=1 "$DOCKER" build -q --platform linux/arm64 -t sonde-standin/static:arm64 \
	-f "$work/Dockerfile" "$work" >/dev/null
arch=$("$DOCKER" image inspect -f '{{.Os}}/{{.Architecture}}' sonde-standin/static:arm64)
[ "$arch" = linux/arm64 ] || { echo "standin: sonde-standin/static:arm64 is $arch" >&2; exit 1; }

# The builder: runtime files + busybox applets + the Go tree.
gb="$work/go"
cp -a "$rt" "$gb"
mkdir -p "$gb/bin" "$gb/usr/local" "$gb/go" "$gb/root"
cp "$busybox" "$gb/bin/busybox"
for applet in $("$busybox" --list); do
	[ -e "$gb/bin/$applet" ] || ln -s busybox "$gb/bin/$applet"
done
tar -C "$gb" -cf "$work/go.tar" .
# The Go tree is appended without its own tests and docs, which builds need not.
tar -C "$(dirname "$GOROOT_DIR")" -rf "$work/go.tar" --anchored \
	--exclude "$(basename "$GOROOT_DIR")/test" --exclude "$(basename "$GOROOT_DIR")/doc" \
	--transform "s,^$(basename "$GOROOT_DIR"),usr/local/go," "$(basename "$GOROOT_DIR")"
"$DOCKER" import \
	--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV GOPATH=/go' --change 'ENV HOME=/root' --change 'WORKDIR /go' \
	"$work/go.tar" sonde-standin/go:local >/dev/null
"$DOCKER" image ls 'sonde-standin/*'
