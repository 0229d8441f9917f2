#!/usr/bin/env bash
# Build the Apptainer images from the definition files in this folder, from the repository root.
#
#   apptainer/build.sh                    # all: pipeline train mlflow-server zenml-server weaviate
#   apptainer/build.sh pipeline train     # some
#
# Images go to $PTWIKI_IMAGES_DIR (default ${PTWIKI_WORKDIR:-.ptwiki}/images) as ptwiki-<name>.sif, each
# with a <image>.sha256 beside it (the digest ptwiki_llm.hpc records in MLflow). pipeline, train and
# mlflow-server are made from the OCI images containers/build.sh built and tested, nothing installed again:
# their archives must be in the same folder first (containers/build.sh --oci-archive "$PTWIKI_IMAGES_DIR"
# pipeline train mlflow-server, where podman runs; copy the .oci.tar files here otherwise). zenml-server and
# weaviate come from their official images (network access to the registries). Labels carry the git commit
# and the lock files' sha256 (`apptainer inspect --labels`). Building needs root, --fakeroot
# (APPTAINER_BUILD_ARGS=--fakeroot) or a machine where you are root: build there and copy the .sif files.
# Environment: APPTAINER_BUILD_ARGS (more `apptainer build` options).
set -euo pipefail

cd "$(dirname "$0")/.."
out=${PTWIKI_IMAGES_DIR:-${PTWIKI_WORKDIR:-.ptwiki}/images}
mkdir -p "$out"
apptainer=${APPTAINER:-apptainer}
command -v "$apptainer" >/dev/null || { echo "build.sh: $apptainer not found (module load apptainer?)" >&2; exit 1; }

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown ]] && [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit=$commit-dirty
fi
names=("$@")
((${#names[@]})) || names=(pipeline train mlflow-server zenml-server weaviate)

for name in "${names[@]}"; do
    def=apptainer/$name.def
    [[ -f $def ]] || { echo "build.sh: no $def" >&2; exit 1; }
    image=$out/ptwiki-$name.sif
    args=(--build-arg "GIT_COMMIT=$commit")
    if grep -q '^Bootstrap: oci-archive' "$def"; then
        archive=$out/ptwiki-$name.oci.tar
        [[ -f $archive ]] || {
            echo "build.sh: no $archive: containers/build.sh --oci-archive $out $name (where podman runs)" >&2
            exit 1
        }
        args+=(--build-arg "OCI_ARCHIVE=$(cd "$out" && pwd)/ptwiki-$name.oci.tar")
    fi
    echo "build.sh: $def -> $image (commit $commit)" >&2
    # shellcheck disable=SC2086  # APPTAINER_BUILD_ARGS is a list of options
    "$apptainer" build --force ${APPTAINER_BUILD_ARGS:-} "${args[@]}" "$image" "$def"
    (cd "$out" && sha256sum "$(basename "$image")" >"$(basename "$image").sha256")
done
echo "build.sh: images in $out" >&2
