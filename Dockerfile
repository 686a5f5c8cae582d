# syntax=docker/dockerfile:1
#
# The leader-elector sidecar image: one static binary on distroless, no shell.
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/leader-elector/leader-elector:v0.1.0 .
# or `make image`. docs/packaging.md explains the pins and how to update them.

# Builder: pinned by version tag, matching the go directive of go.mod (a test
# checks that). Pin it by digest too when building releases; see
# docs/packaging.md for why the checked-in file carries only the tag.
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY pkg/ pkg/
ARG VERSION=devel
ARG TARGETOS
ARG TARGETARCH
# The same flags as `make image-binary` (hack/packaging.mk); a test compares
# them. Static (no cgo), no local paths, no VCS stamp, symbols stripped.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X github.com/leader-elector/leader-elector/internal/cli.buildVersion=${VERSION}" -o /out/sidecar ./cmd/sidecar

# Runtime: distroless static (CA certificates, tzdata, /etc/passwd with the
# nonroot user 65532; no shell, no package manager), pinned by digest:
# gcr.io/distroless/static-debian12:nonroot as published in August 2026.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title="leader-elector" \
      org.opencontainers.image.description="Leader-election sidecar for Kubernetes workloads (etcd or Redis), with fencing tokens" \
      org.opencontainers.image.source="https://github.com/leader-elector/leader-elector" \
      org.opencontainers.image.url="https://github.com/leader-elector/leader-elector" \
      org.opencontainers.image.documentation="https://github.com/leader-elector/leader-elector/blob/main/docs/install.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/sidecar /sidecar
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
EXPOSE 4040
ENTRYPOINT ["/sidecar"]
