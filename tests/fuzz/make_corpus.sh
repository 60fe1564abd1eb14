#!/bin/sh
# Builds a small seed corpus for the archive reader fuzz target from tools/mkimage:
# every layout, plain and compressed, multi-platform and nested indexes, and every
# fault small enough to keep (all but huge-json). Layers are a few hundred bytes so
# that inputs stay around 10 KiB.
#
# usage: tests/fuzz/make_corpus.sh [OUTDIR]     (default: ./corpus)
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
mkimage="$src/tools/mkimage"
out=${1:-corpus}
mkdir -p "$out"

n=0
gen() {
  name=$1
  shift
  "$mkimage" "$@" "$out/$name"
  n=$((n + 1))
}

two_images="--image app:v1=base:700,top:300 --image tools/dbg:2=base:700,extra:200"

for layout in docker-save skopeo docker25 oci; do
  gen "$layout.tar" --layout "$layout" $two_images
  gen "$layout-one-layer.tar" --layout "$layout" --image one=solo:100 \
    --entrypoint '["/bin/sh","-c","/usr/sbin/sshd && /bin/bash"]' --cmd null
  for fault in corrupt-layer missing-blob bad-diffid missing-manifest absolute-path dotdot hardlink device bad-json; do
    gen "$layout-$fault.tar" --layout "$layout" --image app:v1=base:400,top:200 --fault "$fault"
  done
done

gen docker-save.tar.gz --layout docker-save $two_images --compress gzip
gen oci.tar.zst --layout oci $two_images --compress zstd
gen skopeo.tar.xz --layout skopeo $two_images --compress xz
gen docker-save-gzip-layers.tar --layout docker-save --layer-compression gzip $two_images
gen oci-plain-layers.tar --layout oci --layer-compression none $two_images
gen oci-zstd-layers.tar --layout oci --layer-compression zstd $two_images

for layout in docker25 oci; do
  platforms="--platforms linux/amd64,linux/arm64/v8"
  gen "$layout-multi.tar" --layout "$layout" --image app:v1=base:300 $platforms
  gen "$layout-nested.tar" --layout "$layout" --image app:v1=base:300 $platforms --nested-index
  gen "$layout-missing.tar" --layout "$layout" --image app:v1=base:300 $platforms --missing-platform linux/arm64/v8
  gen "$layout-nested-missing.tar" --layout "$layout" --image app:v1=base:300 $platforms --nested-index \
    --missing-platform linux/arm64/v8
done

echo "wrote $n seed inputs to $out" >&2
