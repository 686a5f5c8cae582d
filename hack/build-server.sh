#!/usr/bin/env bash
# Builds a real server binary from source through the Go module proxy, for
# tests that need one (envtest needs kube-apiserver and etcd).
#
#   hack/build-server.sh kube-apiserver v1.37.2 ./bin
#   hack/build-server.sh etcd v3.7.3 ./bin
#
# Neither server can be built with a plain `go install`: their go.mod files
# carry replace directives, which `go install mod@version` refuses. So the
# script builds from a throwaway module in a temporary directory that requires
# the server's module and, for Kubernetes, points every k8s.io staging module
# at its published release. Only Go and the module proxy are needed.
set -euo pipefail

usage() {
	echo "usage: $0 kube-apiserver|etcd VERSION OUTDIR" >&2
	exit 2
}

[ $# -eq 3 ] || usage
name=$1
version=$2
outdir=$3
go=${GO:-go}
case $name in kube-apiserver | etcd) ;; *) usage ;; esac

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/build-${name}.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# The throwaway module must not pick up the settings of the repository the
# script was started from.
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

"$go" mod init "build.local/${name}" 2>/dev/null || {
	echo "go mod init failed in $work" >&2
	exit 1
}

case $name in
kube-apiserver)
	# Staging modules are published as v0.Y.Z for Kubernetes v1.Y.Z.
	staging=v0.${version#v1.}
	kmod=$("$go" list -m -f '{{.GoMod}}' "k8s.io/kubernetes@${version}")
	edits=(-require="k8s.io/kubernetes@${version}")
	while read -r mod; do
		edits+=(-replace="${mod}=${mod}@${staging}")
	done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$kmod")
	if [ ${#edits[@]} -lt 2 ]; then
		echo "no staging replacements found in $kmod" >&2
		exit 1
	fi
	"$go" mod edit "${edits[@]}"
	pkg=k8s.io/kubernetes/cmd/kube-apiserver
	major=${version#v}
	major=${major%%.*}
	minor=${version#v*.}
	minor=${minor%%.*}
	vpkg=k8s.io/component-base/version
	# Without these, discovery reports v0.0.0-master and clients that check
	# the server version misbehave.
	ldflags="-s -w -X ${vpkg}.gitVersion=${version} -X ${vpkg}.gitMajor=${major}"
	ldflags+=" -X ${vpkg}.gitMinor=${minor} -X ${vpkg}.gitTreeState=clean"
	ldflags+=" -X ${vpkg}.buildDate=1970-01-01T00:00:00Z"
	;;
etcd)
	"$go" mod edit -require="go.etcd.io/etcd/server/v3@${version}"
	pkg=go.etcd.io/etcd/server/v3
	ldflags="-s -w"
	;;
*)
	usage
	;;
esac

echo "building ${name} ${version} (this takes a while the first time)" >&2
# -mod=mod lets the build record go.sum entries for just the modules the one
# package needs; `go mod tidy` would fetch every test dependency as well.
"$go" build -trimpath -ldflags "$ldflags" -o "${work}/${name}" "$pkg"

# Replace the binary in one step so an interrupted build never leaves a
# half-written file that looks installed.
mv -f "${work}/${name}" "${outdir}/${name}.tmp"
mv -f "${outdir}/${name}.tmp" "${outdir}/${name}"
echo "installed ${outdir}/${name}" >&2
