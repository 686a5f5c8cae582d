# syntax=docker/dockerfile:1
#
# The leader-elector sidecar image, for users who build with Docker. `make
# image` builds the same image without a container engine (tools/image); a
# test keeps the two in step: the same go build command, the same base files
# (written by the same program), user, entrypoint, port and labels.
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t ghcr.io/leader-elector/leader-elector:v0.1.0 .
# or `make docker-image`. docs/packaging.md explains the pins.

# Builder: pinned by version tag, matching the go directive of go.mod (a test
# checks that). Pin it by digest too when building releases; see
# docs/packaging.md.
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
# The base files: /etc/passwd and /etc/group with the nonroot user, the CA
# bundle (Mozilla's roots from golang.org/x/crypto/x509roots/fallback, pinned
# in tools/image/go.mod) and the license, written by tools/image.
COPY tools/image/go.mod tools/image/go.sum tools/image/
RUN --mount=type=cache,target=/go/pkg/mod cd tools/image && go mod download
COPY tools/image/ tools/image/
COPY LICENSE ./
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    cd tools/image && go run . rootfs -license /src/LICENSE /out/rootfs
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY pkg/ pkg/
ARG VERSION=devel
ARG TARGETOS
ARG TARGETARCH
# The same flags as `make image-binaries` (hack/packaging.mk); a test compares
# them. Static (no cgo), no local paths, no VCS stamp, symbols stripped.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X github.com/leader-elector/leader-elector/internal/cli.buildVersion=${VERSION}" -o /out/sidecar ./cmd/sidecar

# Runtime: nothing but the base files and the binary. No shell, no package
# manager, no base image to pin or patch.
FROM scratch
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title="leader-elector" \
      org.opencontainers.image.description="Leader-election sidecar for Kubernetes workloads (etcd or Redis), with fencing tokens" \
      org.opencontainers.image.source="https://github.com/leader-elector/leader-elector" \
      org.opencontainers.image.url="https://github.com/leader-elector/leader-elector" \
      org.opencontainers.image.documentation="https://github.com/leader-elector/leader-elector/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/rootfs/ /
COPY --from=build /out/sidecar /sidecar
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
WORKDIR /
EXPOSE 4040
ENTRYPOINT ["/sidecar"]
