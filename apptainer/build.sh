#!/usr/bin/env bash
# Build the Apptainer images from the definition files in this folder, from the repository root.
#
#   apptainer/build.sh                    # all: pipeline train mlflow-server zenml-server weaviate
#   apptainer/build.sh pipeline train     # some
#
# Images go to $PTWIKI_IMAGES_DIR (default ${PTWIKI_WORKDIR:-.ptwiki}/images) as ptwiki-<name>.sif, each
# with a <image>.sha256 beside it (the digest ptwiki_llm.hpc records in MLflow). Labels carry the git
# commit and the lock files' sha256 (`apptainer inspect --labels`). Building needs network access to the
# package indexes and either root, --fakeroot (APPTAINER_BUILD_ARGS=--fakeroot) or a machine where you
# are root: build there and copy the .sif files. Alternatives: containers/*.Dockerfile with Docker, then
# `apptainer build ptwiki-pipeline.sif docker-daemon://ptwiki-pipeline:<tag>`.
# Environment: TORCH_INDEX (train: the CUDA wheel index), APPTAINER_BUILD_ARGS (more `apptainer build` options).
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
    if [[ $name == train && -n ${TORCH_INDEX:-} ]]; then
        args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
    fi
    echo "build.sh: $def -> $image (commit $commit)" >&2
    # shellcheck disable=SC2086  # APPTAINER_BUILD_ARGS is a list of options
    "$apptainer" build --force ${APPTAINER_BUILD_ARGS:-} "${args[@]}" "$image" "$def"
    (cd "$out" && sha256sum "$(basename "$image")" >"$(basename "$image").sha256")
done
echo "build.sh: images in $out" >&2
