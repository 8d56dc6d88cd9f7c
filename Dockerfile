# sonde's container image: a static binary on a distroless base, no shell and
# no package manager. Multi-arch: the builder runs on the build machine's own
# platform and cross-compiles for TARGETARCH (`make image` builds amd64 and
# arm64).
#
# The container starts as root only to open its AF_PACKET sockets and its
# listener; sonde then hands DATA_DIR to SONDE_USER and drops to it with no
# capabilities on any thread and no_new_privs (see /api/health: process.uid,
# process.capabilities_effective). Run it with the host's network and only
# the capabilities it needs:
#
#   docker run -d --network host --cap-drop ALL \
#     --cap-add NET_RAW --cap-add NET_ADMIN --cap-add CHOWN --cap-add SETUID \
#     --cap-add SETGID -v sonde-data:/data IMAGE run --interface eth0
#
# No DAC_OVERRIDE: sonde opens DATA_DIR only after the drop, as SONDE_USER,
# so a restart on a volume it already owns needs none.
#
# Base images are arguments so that CI can build this very file offline
# against local stand-ins (deploy/docker/standin.sh). The defaults are the
# public images pinned by tag; no digest is recorded here because none could
# be read from a registry or a document at the time of writing: pin
# `@sha256:...` beside the tag when you can resolve it.
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Modules in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/sonde ./cmd/sonde \
 && mkdir -p /out/data

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/sonde /sonde
# An empty /data owned by root: the volume docker creates from it starts
# writable by the root setup phase; sonde itself chowns it to SONDE_USER.
COPY --from=build /out/data /data
ENV DATA_DIR=/data \
    SONDE_USER=65532:65532 \
    SONDE_LISTEN=:9750 \
    SONDE_LOG_FORMAT=json
# Root only until the sockets are open: sonde drops to SONDE_USER itself.
USER 0:0
VOLUME /data
EXPOSE 9750
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/sonde", "healthcheck"]
ENTRYPOINT ["/sonde"]
CMD ["run"]
