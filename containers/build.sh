#!/usr/bin/env bash
# Build the OCI images of containers/*.Dockerfile with podman, reusing an image whose inputs have not changed, and
# print each image's reference (one line per image) on stdout. From the repository root:
#
#   containers/build.sh                         # pipeline mlflow-server
#   containers/build.sh pipeline                # -> localhost/ptwiki-pipeline:<key>
#   containers/build.sh --ref pipeline          # the reference, without building (exit 3 when not built yet)
#   containers/build.sh --rebuild pipeline      # build again from scratch as <ref>-rebuild (reproducibility check)
#   containers/build.sh --oci-archive DIR pipeline   # also DIR/ptwiki-pipeline.oci.tar, for apptainer/build.sh
#
# <key>: sha256 of the Dockerfile, the image's lock files, apptainer/check_lock.py, the base image's id and the torch
# index. The image is also tagged :latest. Labels: git commit, lock sha256 (checked against the files in the build),
# torch index, base image and key; the lock check (check_lock.py) runs inside the build, which fails on a mismatch.
#
# The base: BASE_IMAGE when set (python:3.11-slim-bookworm where a registry is reachable). Otherwise a Debian base made
# here with debootstrap (--variant=minbase, python3 python3-venv ca-certificates) from DEBIAN_MIRROR, tagged
# localhost/ptwiki-base:<suite>-<the Date of the mirror's Release file> and made again only when that date changes
# (a snapshot.debian.org/archive/debian/<date> mirror pins it for good).
#
# Environment: PTWIKI_CACHE (default /var/cache/ptwiki; pip's download cache for builds lives under
# containers/), BASE_IMAGE, DEBIAN_MIRROR (http://deb.debian.org/debian), DEBIAN_SUITE (bookworm), TORCH_INDEX
# (the PyTorch CPU index; https://pypi.org/simple for PyPI's torch, a CUDA build), PODMAN (podman), PODMAN_RUNTIME
# (e.g. runc where crun cannot run), PODMAN_ULIMITS (e.g. "nofile=4096:4096 nproc=4096:4096" where podman's
# defaults exceed the hard limits), PTWIKI_BUILD_CA_BUNDLE (a CA bundle pip in the build must trust, e.g. a
# proxy's; default $PIP_CERT).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
archive_dir=
while (($#)); do
    case $1 in
        --ref) mode=ref; shift ;;
        --rebuild) mode=rebuild; shift ;;
        --oci-archive) archive_dir=${2:?--oci-archive needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
names=("$@")
((${#names[@]})) || names=(pipeline mlflow-server)

cache=${PTWIKI_CACHE:-/var/cache/ptwiki}/containers
read -r -a podman <<<"${PODMAN:-podman}"
[[ -n ${PODMAN_RUNTIME:-} ]] && podman+=(--runtime "$PODMAN_RUNTIME")
command -v "${podman[0]}" >/dev/null || { echo "build.sh: ${podman[0]} not found (apt-get install podman)" >&2; exit 1; }
limits=()
for limit in ${PODMAN_ULIMITS:-}; do
    limits+=(--ulimit "$limit")
done
log() { echo "build.sh: $*" >&2; }

sha() { sha256sum | cut -c1-64; }
image_id() { "${podman[@]}" image inspect --format '{{.Id}}' "$1" 2>/dev/null; }

debian_base() {
    local mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian} suite=${DEBIAN_SUITE:-bookworm}
    local include=python3,python3-venv,ca-certificates released stamp recipe ref rootfs
    released=$(wget -qO- "$mirror/dists/$suite/Release" | sed -n 's/^Date: //p') || true
    [[ -n $released ]] || { log "cannot read $mirror/dists/$suite/Release (set DEBIAN_MIRROR or BASE_IMAGE)"; return 1; }
    stamp=$(date -u -d "$released" +%Y%m%dT%H%M%SZ)
    recipe=$(printf 'minbase %s %s\n' "$include" "$mirror" | sha | cut -c1-8)
    ref=localhost/ptwiki-base:$suite-$stamp-$recipe
    if [[ -z $(image_id "$ref") ]]; then
        [[ $mode == ref ]] && { log "base $ref not built yet"; return 3; }
        command -v debootstrap >/dev/null || { log "debootstrap not found (apt-get install debootstrap)"; return 1; }
        mkdir -p "$cache"
        rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
        log "debootstrap $suite from $mirror (Release of $released) -> $ref"
        debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" >&2
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -c . | "${podman[@]}" import \
            --change "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change "ENV=LANG=C.UTF-8" --change "CMD=/bin/bash" \
            --change "LABEL=ptwiki.debian.release=$stamp" --change "LABEL=ptwiki.debian.mirror=$mirror" \
            - "$ref" >&2
        rm -rf "$rootfs"
    fi
    echo "$ref"
}

base=${BASE_IMAGE:-}
if [[ -z $base ]]; then
    base=$(debian_base) || exit $?
elif [[ -z $(image_id "$base") ]]; then
    [[ $mode == ref ]] && { log "base $base not pulled yet"; exit 3; }
    "${podman[@]}" pull "$base" >&2
fi
base_id=$(image_id "$base")
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown ]] && [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit=$commit-dirty
fi
torch_index=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

for name in "${names[@]}"; do
    dockerfile=containers/$name.Dockerfile
    [[ -f $dockerfile ]] || { log "no $dockerfile"; exit 1; }
    case $name in
        pipeline) locks=(requirements/constraints.txt requirements/torch-cpu.txt) ;;
        train) locks=(requirements/constraints.txt requirements/torch-cpu.txt requirements/gpu.txt) ;;
        mlflow-server) locks=(requirements/constraints.txt requirements/mlflow-server.txt) ;;
        *) log "no lock files known for $name"; exit 1 ;;
    esac
    args=()
    index=
    if grep -q '^ARG TORCH_INDEX' "$dockerfile"; then
        index=$torch_index
        [[ $name == train ]] && index=${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}
        args+=(--build-arg "TORCH_INDEX=$index")
    fi
    lock=$(cat "${locks[@]}" | sha)
    key=$( { cat "$dockerfile" "${locks[@]}" apptainer/check_lock.py; echo "$base_id"; echo "$index"; } | sha | cut -c1-16)
    ref=localhost/ptwiki-$name:$key
    if [[ $mode == ref ]]; then
        [[ -n $(image_id "$ref") ]] || { log "$ref not built yet"; exit 3; }
        echo "$ref"
        continue
    fi
    target=$ref
    if [[ $mode == rebuild ]]; then
        target=$ref-rebuild
        args+=(--no-cache)
    elif [[ -n $(image_id "$ref") ]]; then
        log "$ref is up to date (key $key)"
        target=
    fi
    if [[ -n $target ]]; then
        context=$(mktemp -d)
        mkdir -p "$context/requirements" "$context/apptainer" "$cache/tmp"
        cp "${locks[@]}" "$context/requirements/"
        cp apptainer/check_lock.py "$context/apptainer/"
        ca=${PTWIKI_BUILD_CA_BUNDLE:-${PIP_CERT:-}}
        if [[ -n $ca ]]; then  # pip in the build trusts this bundle (mounted for RUN only, never in a layer)
            cp "$ca" "$context/ca.crt"
            printf '[global]\ncert = /run/ptwiki-build/ca.crt\n' >"$context/pip.conf"
            args+=(-v "$context/ca.crt:/run/ptwiki-build/ca.crt:ro" -v "$context/pip.conf:/run/ptwiki-build/pip.conf:ro"
                   --build-arg PIP_CONFIG_FILE=/run/ptwiki-build/pip.conf)
        fi
        log "building $target from $dockerfile on $base (lock $lock, commit $commit)"
        started=$SECONDS
        # TMPDIR: where buildah keeps RUN --mount=type=cache folders (pip's downloads), kept between builds
        TMPDIR=$cache/tmp "${podman[@]}" build --format=docker --network=host --pull=never "${limits[@]}" -f "$dockerfile" \
            -t "$target" --build-arg "BASE_IMAGE=$base" --build-arg "GIT_COMMIT=$commit" \
            --build-arg "LOCK_SHA256=$lock" --label "ptwiki.image.key=$key" --label "ptwiki.base.id=$base_id" \
            "${args[@]}" "$context" >&2 || { rm -rf "$context"; exit 1; }
        rm -rf "$context"
        log "built $target in $((SECONDS - started)) s"
        [[ $mode == rebuild ]] || "${podman[@]}" tag "$ref" "localhost/ptwiki-$name:latest"
    fi
    if [[ -n $archive_dir ]]; then
        mkdir -p "$archive_dir"
        rm -f "$archive_dir/ptwiki-$name.oci.tar"
        "${podman[@]}" save --format oci-archive -o "$archive_dir/ptwiki-$name.oci.tar" "$ref" >&2
        log "wrote $archive_dir/ptwiki-$name.oci.tar"
    fi
    echo "${target:-$ref}"
done
