#!/usr/bin/env bash
# Prepares, here (with internet), what benchmarks/gpu.sh needs on the GPU machine, which has no internet, in one
# git-ignored folder to carry to the run (default .gpu-carry, about 40 MiB of the run's 64):
#   wheels/  what mmv needs beyond that machine's own packages (Python 3.12, torch 2.11, transformers 5.17,
#            huggingface_hub 1.x, tokenizers 0.23, safetensors 0.8, pillow, pytest ...). mmv's hub code needs
#            huggingface_hub 2.x and httpx2, which transformers before 5.18 does not accept, so transformers comes
#            too, at the version the test suite runs on here. Each wheel is pinned and fetched without its
#            dependencies, so nothing that machine already has travels; gpu.sh puts them ahead of its own packages.
#   shared/  the parts of ../shared the gpu-marked tests and the benchmarks read (the tokenizer and the reference
#            fixtures' encoders, weights and cases): ../shared itself does not travel to that machine.
#
# Usage: bash benchmarks/gpu_wheels.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.gpu-carry}"
mkdir -p "$dest/wheels" "$dest/shared/fixtures/reference"
wheels=(
    transformers==5.24.0
    huggingface_hub==2.4.0
    httpx2==2.16.2
    httpcore2==2.16.2
    truststore==0.10.5
    gguf==0.19.0
    platformdirs==4.14.8
    # newer than the machine may hold: transformers checks regex's version when it is imported
    regex==2026.11.19
    click==8.5.1
    idna==3.20
)
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$dest/wheels" "${wheels[@]}"

cp -r ../shared/minimind_tokenizer "$dest/shared/"
for variant in p32 p32-moe p16-merge2x2 naflex-merge4; do
    to="$dest/shared/fixtures/reference/$variant"
    mkdir -p "$to"
    from=../shared/fixtures/reference/$variant
    cp -r "$from/vision" "$from/vlm_config.json" "$from/model.pth" "$from/llm.pth" "$from/cases.safetensors" "$to/"
done
du -sh "$dest"
