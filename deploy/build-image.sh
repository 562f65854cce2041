#!/bin/bash
# Build epe's container image with podman, pulling nothing (docs/deploy.md, The image):
#   deploy/build-image.sh CONTEXT TAG
# CONTEXT holds wheelhouse/ (epe's wheel and its dependencies' wheels: `make image` builds
# it). EPE_IMAGE_EXTRAS: the extras installed with epe (default postgres; postgres,ray for
# KubeRay's nodes, with Ray in the wheelhouse). The base, a Debian root filesystem made by
# mmdebstrap from Debian's packages with the host's apt sources, is imported once as
# localhost/epe-base:SUITE-RECIPE, where RECIPE is a hash of mmdebstrap's options: a change
# to them makes a new base.
# Run as root (podman's rootful storage). runc, not crun: crun refuses hosts with hybrid
# cgroups, and the explicit runtime holds wherever both are installed. No layer cache: the
# RUN step mounts the wheelhouse, which a cached layer would not notice has changed.
set -euo pipefail  # a failed mmdebstrap must not leave a half base imported
set -f  # the options below hold globs for dpkg, not for the shell
context=$1
tag=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
# The suite whose Python is the one the wheelhouse was built for (3.11: bookworm).
suite=${EPE_IMAGE_SUITE:-bookworm}
sources=${EPE_IMAGE_SOURCES:-/etc/apt/sources.list.d/debian.sources}
test -e "$sources" || sources=/etc/apt/sources.list
# minbase and the Python epe runs on, nothing else; no documentation or translations.
debootstrap_options="--variant=minbase --include=python3,python3-venv
    --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-exclude=/usr/share/man/*
    --dpkgopt=path-exclude=/usr/share/locale/* --dpkgopt=path-exclude=/usr/share/info/*"
recipe=$(printf '%s %s' "$suite" "$debootstrap_options" | sha256sum | cut -c1-12)
base="localhost/epe-base:$suite-$recipe"

if ! podman image exists "$base"; then
    # Split into words on purpose: no option holds a space.
    # shellcheck disable=SC2086
    mmdebstrap $debootstrap_options "$suite" - "$sources" | podman import - "$base"
fi
podman build --runtime runc --pull=never --no-cache --network=none --build-arg "BASE=$base" \
    --build-arg "EXTRAS=${EPE_IMAGE_EXTRAS:-postgres}" \
    -f "$repo/Containerfile" -t "$tag" "$context"
