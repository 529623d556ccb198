#!/usr/bin/env bash
# `make run`: ote-cloud with its embedded control plane under out/run/cloud,
# a token for one box, and a box: an image for the host's arch built with
# that token on its boot partition and booted in QEMU (which reaches the
# host's tunnel as 10.0.2.2). Ctrl-C stops both.
set -euo pipefail

arch=$1 api=$2 status=$3
out=out/$arch
run=out/run
mkdir -p "$run/cloud"

: >"$run/cloud.out"
"$out/ote-cloud" serve --data-dir "$run/cloud" --api-listen "$api" --listen 127.0.0.1:7443 >"$run/cloud.out" &
cloud=$!
trap 'kill $cloud 2>/dev/null; wait $cloud 2>/dev/null' EXIT

# Ready once it says it serves (CRDs installed, tree CA made, tunnel bound).
until grep -q '^ote-cloud: serving' "$run/cloud.out"; do
	kill -0 $cloud 2>/dev/null || { echo "run: ote-cloud serve exited" >&2; exit 1; }
	sleep 0.2
done
"$out/ote-cloud" token create --kubeconfig "$run/cloud/kubeconfig" --enroll-yaml --server 10.0.2.2:7443 \
	--name-prefix box --uses 1 >"$run/enroll.yaml"
"$out/ote-image" build --board "qemu-$arch" --out "$run/box.img" --enroll "$run/enroll.yaml"

cat <<MSG

Cloud controller: kubectl --kubeconfig $run/cloud/kubeconfig get edgeclusters
                  (kubectl is $out/kubectl)
Box status page:  http://$status/   JSON: http://$status/api/v1/status
                  (the device password is printed on the console below)
Stop with Ctrl-C.

MSG
"$out/ote-image" qemu --status "$status" "$run/box.img" "qemu-$arch"
