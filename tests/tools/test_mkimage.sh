#!/usr/bin/env bash
# Checks tools/mkimage against real tools: determinism, skopeo's reading of
# every layout, imports into a real containerd (tools/lab), and the shape of
# archives written by umoci + skopeo themselves.
#
# Needs python3; the skopeo, containerd and umoci parts are skipped (and
# counted as skipped) when those tools are missing.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MK=$ROOT/tools/mkimage
LAB=$ROOT/tools/lab
S=$(mktemp -d "${TMPDIR:-/tmp}/test_mkimage.XXXXXX")
LABDIR=$S/lab
pass=0
fail=0
skip=0
T0=$SECONDS

cleanup() {
  if [[ -e $LABDIR ]]; then "$LAB" down "$LABDIR" >/dev/null 2>&1 || true; fi
  if ((fail == 0)); then
    rm -rf -- "$S"
  else
    echo "scratch directory kept: $S"
  fi
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
skipped() { skip=$((skip + 1)); echo "skip - $*"; }

# check DESCRIPTION COMMAND...: passes if the command exits 0.
check() {
  local desc=$1
  shift
  if "$@" >"$S/last.out" 2>&1; then
    ok "$desc"
  else
    bad "$desc"
    tail -n 15 "$S/last.out" | sed 's/^/    /'
  fi
}

# check_fails DESCRIPTION COMMAND...: passes if the command exits non-zero.
check_fails() {
  local desc=$1
  shift
  if "$@" >"$S/last.out" 2>&1; then
    bad "$desc (unexpectedly succeeded)"
    tail -n 15 "$S/last.out" | sed 's/^/    /'
  else
    ok "$desc"
  fi
}

# jget FILE EXPR: evaluate a Python expression with j = the JSON in FILE
# (FILE "-" = stdin); lists print one item per line.
jget() {
  python3 -c '
import json, sys
f = sys.argv[1]
j = json.load(sys.stdin if f == "-" else open(f))
r = eval(sys.argv[2])
if isinstance(r, (list, tuple)):
    for x in r: print(x if isinstance(x, str) else json.dumps(x))
elif isinstance(r, str): print(r)
else: print(json.dumps(r))
' "$@"
}

# shape TAR: one line per entry, "TYPE MODE NAME[ -> TARGET]", 64-hex runs
# replaced by <H>, sorted and de-duplicated.
shape() {
  python3 -c '
import re, sys, tarfile
H = re.compile(r"[0-9a-f]{64}")
out = set()
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        k = "f" if m.isreg() else "d" if m.isdir() else "l" if m.issym() else "h" if m.islnk() else "?"
        s = "%s %o %s" % (k, m.mode, H.sub("<H>", m.name.rstrip("/")))
        if m.issym() or m.islnk():
            s += " -> " + H.sub("<H>", m.linkname)
        out.add(s)
print("\n".join(sorted(out)))
' "$1"
}

sha() { sha256sum "$1" | cut -d" " -f1; }

have() { command -v "$1" >/dev/null 2>&1; }

# shellcheck disable=SC2054 # the commas are part of the arguments
IMGS=(--image app:v1=base:1M,app1:64K --image app:v2=base:1M,app2:64K)
LAYOUTS=(docker-save skopeo docker25 oci)

echo "# scratch: $S"

# ------------------------------------------------------------ CLI basics
check "mkimage --help exits 0" "$MK" --help
check_fails "mkimage without --image fails" "$MK" "$S/x.tar"
"$MK" --layout nope --image a=b:1 "$S/x.tar" >/dev/null 2>&1
if [[ $? == 2 ]]; then ok "mkimage bad --layout exits 2"; else bad "mkimage bad --layout exits 2"; fi
check "lab --help exits 0" "$LAB" --help
"$LAB" frobnicate >/dev/null 2>&1
if [[ $? == 2 ]]; then ok "lab bad command exits 2"; else bad "lab bad command exits 2"; fi

# ------------------------------------------------------------ generation + determinism
for l in "${LAYOUTS[@]}"; do
  mkdir -p "$S/$l"
  if "$MK" --layout "$l" "${IMGS[@]}" "$S/$l/a.tar" --print-json >"$S/$l/a.json" 2>"$S/$l/err" &&
     "$MK" --layout "$l" "${IMGS[@]}" "$S/$l/b.tar" >/dev/null 2>>"$S/$l/err"; then
    check "$l: two runs give identical bytes" test "$(sha "$S/$l/a.tar")" == "$(sha "$S/$l/b.tar")"
  else
    bad "$l: mkimage failed"
    sed 's/^/    /' "$S/$l/err"
  fi
done

# Same output on stdout as in a file.
"$MK" --layout skopeo "${IMGS[@]}" - >"$S/stdout.tar" 2>/dev/null
check "stdout output equals file output" cmp "$S/stdout.tar" "$S/skopeo/a.tar"

# Whole-archive compression: deterministic and decompresses to the plain tar.
for c in gz zst xz; do
  "$MK" --layout docker25 "${IMGS[@]}" "$S/c1.tar.$c" >/dev/null 2>&1
  "$MK" --layout docker25 "${IMGS[@]}" "$S/c2.tar.$c" >/dev/null 2>&1
  case $c in gz) dec=(gzip -dc) ;; zst) dec=(zstd -dcq) ;; xz) dec=(xz -dc) ;; esac
  check "compress .$c: deterministic" cmp "$S/c1.tar.$c" "$S/c2.tar.$c"
  check "compress .$c: decompresses to the uncompressed archive" \
    cmp <("${dec[@]}" "$S/c1.tar.$c") "$S/docker25/a.tar"
done
check "--compress gzip overrides the suffix" bash -c \
  "'$MK' --layout oci --compress gzip --image a=b:1K '$S/g.tar' && gzip -t '$S/g.tar'"

# Layers are shared: same SEED:SIZE -> same diff_id in every layout and image;
# uncompressed docker layouts store blobs whose digest is the diff_id.
check "config digests identical across layouts" test "$(
  for l in "${LAYOUTS[@]}"; do jget "$S/$l/a.json" '[i["config_digest"] for i in j["images"]]'; done |
    sort | uniq -c | awk '{print $1}' | sort -u | tr -d '\n')" == 4
check "base layer shared by both images, app layers differ" python3 -c '
import json, sys
for f in sys.argv[1:]:
    j = json.load(open(f))
    a, b = [[l["diff_id"] for l in i["layers"]] for i in j["images"]]
    assert a[0] == b[0] and a[1] != b[1], f
' "$S"/{docker-save,skopeo,docker25,oci}/a.json
check "docker layouts: blob digest == diff_id, oci: gzip blobs" python3 -c '
import json, sys
for f in sys.argv[1:]:
    j = json.load(open(f))
    for i in j["images"]:
        for l in i["layers"]:
            if j["layout"] == "oci":
                assert l["digest"] != l["diff_id"] and l["media_type"].endswith("+gzip"), l
            else:
                assert l["digest"] == l["diff_id"] and l["size"] == l["uncompressed_size"], l
' "$S"/{docker-save,skopeo,docker25,oci}/a.json

# Every digest in the description is the sha256 of the bytes in the archive.
check "described digests match the archive bytes" python3 -c '
import hashlib, json, sys, tarfile
for l in sys.argv[2:]:
    j = json.load(open("%s/%s/a.json" % (sys.argv[1], l)))
    t = tarfile.open("%s/%s/a.tar" % (sys.argv[1], l))
    names = t.getnames()
    def blob(name):
        m = t.getmember(name)
        while m.issym():
            import posixpath
            m = t.getmember(posixpath.normpath(posixpath.join(posixpath.dirname(m.name), m.linkname)))
        return t.extractfile(m).read()
    mj = json.loads(blob("manifest.json")) if "manifest.json" in names else None
    for n, i in enumerate(j["images"]):
        for x in i["layers"]:
            data = blob(x["path"])
            assert "sha256:" + hashlib.sha256(data).hexdigest() == x["digest"], (l, x)
            assert len(data) == x["size"], (l, x)
        if i["manifest_digest"]:
            data = blob("blobs/sha256/" + i["manifest_digest"][7:])
            assert "sha256:" + hashlib.sha256(data).hexdigest() == i["manifest_digest"]
        if mj is not None:
            cfg = blob(mj[n]["Config"])
            assert "sha256:" + hashlib.sha256(cfg).hexdigest() == i["config_digest"], l
            c = json.loads(cfg)
            assert c["rootfs"]["diff_ids"] == [x["diff_id"] for x in i["layers"]]
            assert c["created"] == "1970-01-01T00:00:00Z" and c["config"]["Cmd"] == ["/bin/sh"]
            assert "Entrypoint" not in c["config"]
' "$S" "${LAYOUTS[@]}"

check "layer tar holds layers/SEED of SIZE bytes" bash -c \
  "tar xOf '$S/docker25/a.tar' blobs/sha256/\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"images\"][0][\"layers\"][1][\"digest\"][7:])' '$S/docker25/a.json') | tar tvf - | grep -q ' 65536 1970-01-01 00:00 layers/app1\$'"

check "tar entries: mtime 0, uid/gid 0, no user names, sorted" python3 -c '
import sys, tarfile
for f in sys.argv[1:]:
    ms = tarfile.open(f).getmembers()
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in ms), f
    names = [m.name for m in ms]
    assert names == sorted(names, key=lambda n: n.encode()), f
' "$S"/{docker-save,skopeo,docker25,oci}/a.tar

# --compressible: 1 -> tiny gzip, 0 -> incompressible.
"$MK" --layout oci --compressible 1 --image a=x:1M "$S/c1.tar" --json-out "$S/c1.json" 2>/dev/null
"$MK" --layout oci --compressible 0 --image a=x:1M "$S/c0.tar" --json-out "$S/c0.json" 2>/dev/null
check "--compressible 1 gzips below 5%" test "$(jget "$S/c1.json" 'j["images"][0]["layers"][0]["size"] * 20 < j["images"][0]["layers"][0]["uncompressed_size"]')" == true
check "--compressible 0 stays above 99%" test "$(jget "$S/c0.json" 'j["images"][0]["layers"][0]["size"] * 100 > 99 * j["images"][0]["layers"][0]["uncompressed_size"]')" == true
"$MK" --layout docker-save --compressible 0 --image a=x:8M "$S/z0.tar" 2>/dev/null
check "--compressible 0 resists zstd long matches too" test "$(zstd -q -19 --long=27 -c "$S/z0.tar" | wc -c)" -gt $((8 * 1024 * 1024 * 99 / 100))

check "--entrypoint/--cmd/--platform reach the config" bash -c "
  '$MK' --layout oci --entrypoint '[\"/app\",\"-x\"]' --cmd null --platform linux/arm/v7 --image a=b:1K '$S/e.tar' --print-json >'$S/e.json' &&
  cfg=\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"images\"][0][\"config_digest\"][7:])' '$S/e.json') &&
  tar xOf '$S/e.tar' blobs/sha256/\$cfg | python3 -c '
import json, sys
c = json.load(sys.stdin)
assert c[\"config\"][\"Entrypoint\"] == [\"/app\", \"-x\"] and \"Cmd\" not in c[\"config\"], c
assert (c[\"os\"], c[\"architecture\"], c[\"variant\"]) == (\"linux\", \"arm\", \"v7\"), c'"

# Speed: content generation must be cheap.
t=$(python3 -c 'import time; print(time.time())')
"$MK" --layout docker-save --layer-compression none --image big=speed:256M - >/dev/null 2>&1
dt=$(python3 -c "import time; print('%.2f' % (time.time() - $t))")
check "256 MiB image generated in ${dt}s (< 8 s)" python3 -c "assert $dt < 8"

# ------------------------------------------------------------ multi-platform
# shellcheck disable=SC2054
MP=(--platforms linux/amd64,linux/arm64 --image app:v1=base:64K,a:4K)
"$MK" --layout oci "${MP[@]}" "$S/mp-flat.tar" --print-json >"$S/mp-flat.json" 2>/dev/null
"$MK" --layout oci "${MP[@]}" --nested-index "$S/mp-nested.tar" --print-json >"$S/mp-nested.json" 2>/dev/null
"$MK" --layout docker25 "${MP[@]}" --nested-index --missing-platform linux/arm64 \
  "$S/mp-miss.tar" --print-json >"$S/mp-miss.json" 2>/dev/null
"$MK" --layout docker25 "${MP[@]}" --nested-index --missing-platform linux/arm64 "$S/mp-miss2.tar" 2>/dev/null
check "multi-platform: deterministic" cmp "$S/mp-miss.tar" "$S/mp-miss2.tar"
check "multi-platform: per-platform layers differ, sizes equal" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
a, b = j["images"]
assert (a["platform"], b["platform"]) == ("linux/amd64", "linux/arm64")
for x, y in zip(a["layers"], b["layers"]):
    assert x["diff_id"] != y["diff_id"] and x["uncompressed_size"] == y["uncompressed_size"]
    assert x["seed"].endswith("@linux/amd64") and y["seed"].endswith("@linux/arm64")
' "$S/mp-flat.json"
check "flat: index.json lists both manifests with platform" bash -c \
  "tar xOf '$S/mp-flat.tar' index.json | python3 -c '
import json, sys
m = json.load(sys.stdin)[\"manifests\"]
assert [d[\"platform\"][\"architecture\"] for d in m] == [\"amd64\", \"arm64\"], m
assert all(d[\"mediaType\"].endswith(\"manifest.v1+json\") for d in m)'"
check "nested: index.json -> image index -> manifests" bash -c "
  idx=\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"images\"][0][\"index_digest\"][7:])' '$S/mp-nested.json') &&
  tar xOf '$S/mp-nested.tar' index.json | grep -q \"index.v1+json\\\",\\\"digest\\\":\\\"sha256:\$idx\" &&
  tar xOf '$S/mp-nested.tar' blobs/sha256/\$idx | grep -q '\"architecture\":\"arm64\"'"
check "missing platform: descriptor kept, blobs absent" python3 -c '
import json, sys, tarfile
j = json.load(open(sys.argv[1]))
names = set(tarfile.open(sys.argv[2]).getnames())
amd, arm = j["images"]
assert amd["present"] and not arm["present"]
assert "blobs/sha256/" + arm["manifest_digest"][7:] not in names
assert "blobs/sha256/" + arm["config_digest"][7:] not in names
assert not any("blobs/sha256/" + l["digest"][7:] in names for l in arm["layers"])
assert "blobs/sha256/" + amd["manifest_digest"][7:] in names
idx = tarfile.open(sys.argv[2]).extractfile("blobs/sha256/" + amd["index_digest"][7:]).read().decode()
assert arm["manifest_digest"] in idx
' "$S/mp-miss.json" "$S/mp-miss.tar"
check_fails "--platforms refused for docker-save" "$MK" --layout docker-save "${MP[@]}" "$S/x.tar"

# ------------------------------------------------------------ faults
fault() { # LAYOUT KIND -> $S/f-LAYOUT-KIND.{tar,json}
  "$MK" --layout "$1" --fault "$2" --image app:v1=base:64K,a:4K "$S/f-$1-$2.tar" \
    --print-json >"$S/f-$1-$2.json" 2>/dev/null
}
for l in "${LAYOUTS[@]}"; do
  for k in corrupt-layer missing-blob bad-diffid missing-manifest absolute-path dotdot hardlink \
           device huge-json bad-json; do
    fault "$l" "$k"
  done
done
check "faults: entries and effects as documented" python3 -c '
import hashlib, json, sys, tarfile
S = sys.argv[1]
for l in sys.argv[2:]:
    def load(k):
        return json.load(open("%s/f-%s-%s.json" % (S, l, k))), tarfile.open("%s/f-%s-%s.tar" % (S, l, k))
    roots = ["manifest.json"] if l in ("docker-save", "skopeo") else ["index.json"] if l == "oci" else ["manifest.json", "index.json"]
    j, t = load("corrupt-layer")
    x = j["images"][0]["layers"][0]
    data = t.extractfile(x["path"]).read()
    assert len(data) == x["size"] and "sha256:" + hashlib.sha256(data).hexdigest() != x["digest"], l
    assert j["fault_details"]["corrupt_layer"] == x["digest"]
    j, t = load("missing-blob")
    x = j["images"][0]["layers"][-1]
    assert x["path"] is None and j["fault_details"]["missing_blob"] == x["digest"], l
    assert not any(x["digest"][7:] in n and not t.getmember(n).issym() for n in t.getnames()), l
    j, t = load("bad-diffid")
    x = j["images"][0]["layers"][0]
    assert x["config_diff_id"] != x["diff_id"], l
    j, t = load("missing-manifest")
    assert not set(roots) & set(t.getnames()), l
    assert "/etc/evil" in load("absolute-path")[1].getnames(), l
    assert "../evil" in load("dotdot")[1].getnames(), l
    j, t = load("hardlink")
    m = t.getmember("evil-link")
    assert m.islnk() and m.linkname == j["images"][0]["layers"][0]["path"], l
    m = load("device")[1].getmember("dev-null")
    assert m.ischr() and (m.devmajor, m.devminor) == (1, 3), l
    j, t = load("huge-json")
    for r in roots:
        m = t.getmember(r)
        assert m.size == 64 << 20, l
        json.loads(t.extractfile(m).read())
    j, t = load("bad-json")
    for r in roots:
        try:
            json.loads(t.extractfile(r).read())
        except ValueError:
            pass
        else:
            raise AssertionError("valid json in bad-json " + l)
' "$S" "${LAYOUTS[@]}"

# ------------------------------------------------------------ skopeo reads them
if have skopeo; then
  for l in docker-save skopeo docker25; do
    for tag in v1 v2; do
      n=$([[ $tag == v1 ]] && echo 0 || echo 1)
      skopeo inspect --raw "docker-archive:$S/$l/a.tar:app:$tag" >"$S/$l/sk-$tag.json" 2>"$S/$l/sk-$tag.err"
      check "skopeo docker-archive $l app:$tag: config and layers match" python3 -c '
import json, sys
m = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2]))["images"][int(sys.argv[3])]
assert m["config"]["digest"] == d["config_digest"], (m["config"], d["config_digest"])
assert m["config"]["size"] == d["config_size"]
assert [x["digest"] for x in m["layers"]] == [x["diff_id"] for x in d["layers"]]
assert [x["size"] for x in m["layers"]] == [x["uncompressed_size"] for x in d["layers"]]
' "$S/$l/sk-$tag.json" "$S/$l/a.json" "$n"
    done
    check "skopeo docker-archive $l: config blob digest" bash -c \
      "test sha256:\$(skopeo inspect --config --raw 'docker-archive:$S/$l/a.tar:app:v1' | sha256sum | cut -d' ' -f1) == \
       \$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"images\"][0][\"config_digest\"])' '$S/$l/a.json')"
  done
  # OCI layouts (docker25 is one too): skopeo returns the stored manifest.
  for l in oci docker25; do
    for tag in v1 v2; do
      n=$([[ $tag == v1 ]] && echo 0 || echo 1)
      skopeo inspect --raw "oci-archive:$S/$l/a.tar:$tag" >"$S/$l/ski-$tag.json" 2>"$S/$l/ski-$tag.err"
      check "skopeo oci-archive $l :$tag: manifest bytes, config and layers match" python3 -c '
import hashlib, json, sys
raw = open(sys.argv[1], "rb").read().rstrip(b"\n")
m = json.loads(raw); d = json.load(open(sys.argv[2]))["images"][int(sys.argv[3])]
assert "sha256:" + hashlib.sha256(raw).hexdigest() == d["manifest_digest"]
assert m["config"]["digest"] == d["config_digest"]
assert [(x["digest"], x["size"], x["mediaType"]) for x in m["layers"]] == \
       [(x["digest"], x["size"], x["media_type"]) for x in d["layers"]]
' "$S/$l/ski-$tag.json" "$S/$l/a.json" "$n"
    done
  done
  check "skopeo oci-archive: nested multi-platform index digest" bash -c \
    "test sha256:\$(skopeo inspect --raw 'oci-archive:$S/mp-nested.tar:v1' | sha256sum | cut -d' ' -f1) == \
     \$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"images\"][0][\"index_digest\"])' '$S/mp-nested.json')"
  "$MK" --layout oci --layer-compression zstd --image app:v1=base:64K,a:4K "$S/zl.tar" --print-json >"$S/zl.json" 2>/dev/null
  check "skopeo oci-archive: zstd layers" bash -c \
    "skopeo inspect --raw 'oci-archive:$S/zl.tar:v1' | grep -q 'tar+zstd'"
else
  skipped "skopeo checks (skopeo not installed)"
fi

# ------------------------------------------------------------ reference archives from umoci + skopeo
if have skopeo && have umoci; then
  R=$S/ref
  mkdir -p "$R"
  if (cd "$R" && umoci init --layout oci && umoci new --image oci:v1 &&
      umoci unpack --rootless --image oci:v1 bundle && mkdir -p bundle/rootfs/etc &&
      echo hello >bundle/rootfs/etc/hello && umoci repack --image oci:v1 bundle &&
      skopeo copy -q oci:oci:v1 docker-archive:out.tar:app:v1 &&
      skopeo copy -q oci:oci:v1 oci-archive:out2.tar:v1) >"$R/log" 2>&1; then
    "$MK" --layout skopeo --image app:v1=base:64K "$S/one-skopeo.tar" 2>/dev/null
    "$MK" --layout oci --image app:v1=base:64K "$S/one-oci.tar" 2>/dev/null
    check "skopeo layout has skopeo docker-archive's shape (names, types, modes, symlinks)" \
      diff <(shape "$R/out.tar") <(shape "$S/one-skopeo.tar")
    check "oci layout has skopeo oci-archive's shape" diff <(shape "$R/out2.tar") <(shape "$S/one-oci.tar")
    check "skopeo layout: manifest.json, repositories, VERSION, legacy json keys as skopeo's" python3 -c '
import json, re, sys, tarfile
def info(f):
    t = tarfile.open(f)
    mj = json.load(t.extractfile("manifest.json"))
    repos = json.load(t.extractfile("repositories"))
    v = [t.extractfile(n).read() for n in t.getnames() if n.endswith("/VERSION")]
    k = [sorted(set(json.load(t.extractfile(n))) - {"parent"}) for n in t.getnames() if n.endswith("/json")]
    return ([sorted(e) for e in mj], [e["RepoTags"] for e in mj], list(repos), sorted(set(v)), k[0])
a, b = info(sys.argv[1]), info(sys.argv[2])
assert a == b, (a, b)
' "$R/out.tar" "$S/one-skopeo.tar"
    check "oci layout: oci-layout bytes, index.json keys and annotations as skopeo's" python3 -c '
import json, sys, tarfile
def info(f):
    t = tarfile.open(f)
    idx = json.load(t.extractfile("index.json"))
    return (t.extractfile("oci-layout").read(), sorted(idx),
            [(sorted(d), d.get("annotations"), d["mediaType"]) for d in idx["manifests"]])
a, b = info(sys.argv[1]), info(sys.argv[2])
assert a == b, (a, b)
' "$R/out2.tar" "$S/one-oci.tar"
    check "layer media types as skopeo's oci-archive (gzip)" bash -c \
      "diff <(skopeo inspect --raw oci-archive:$R/out2.tar:v1 | python3 -c 'import json,sys; print([l[\"mediaType\"] for l in json.load(sys.stdin)[\"layers\"]])') \
            <(skopeo inspect --raw oci-archive:$S/one-oci.tar:v1 | python3 -c 'import json,sys; print([l[\"mediaType\"] for l in json.load(sys.stdin)[\"layers\"]])')"
  else
    bad "building reference archives with umoci + skopeo"
    sed 's/^/    /' "$R/log"
  fi
else
  skipped "reference archive comparison (needs skopeo and umoci)"
fi

# ------------------------------------------------------------ real containerd
if have containerd && have ctr; then
  if "$LAB" up 1 "$LABDIR" >"$S/lab.out" 2>&1; then
    ok "lab up 1 ($(cat "$LABDIR/snapshotter"))"
    C=("$LAB" ctr 1 "$LABDIR" --)
    check "lab nodes prints the URI" grep -qx "containerd://$LABDIR/node1/sock?snapshotter=$(cat "$LABDIR/snapshotter")" \
      <("$LAB" nodes "$LABDIR")
    check "lab env is evaluable" bash -c "eval \"\$('$LAB' env '$LABDIR')\" && test \"\$KLOAD_LAB\" == '$LABDIR' && test -n \"\$KLOAD_NODES\""

    # Remove every image and collect its content and snapshots right away, so
    # that no blob of one check can satisfy a later (thin) import.
    rm_all_images() {
      local refs
      mapfile -t refs < <("${C[@]}" images ls -q 2>/dev/null)
      if ((${#refs[@]})); then "${C[@]}" images rm --sync "${refs[@]}" >/dev/null 2>&1 || true; fi
    }

    # import_check DESC FILE JSON [ctr import options]: import, then every
    # present image must be complete, unpacked and point at the described
    # config; then remove them.
    import_check() {
      local desc=$1 file=$2 json=$3
      shift 3
      local snap
      snap=$(cat "$LABDIR/snapshotter")
      if ! "${C[@]}" images import --snapshotter "$snap" "$@" "$file" >"$S/imp.out" 2>&1; then
        bad "$desc: import failed"
        tail -n 5 "$S/imp.out" | sed 's/^/    /'
        return
      fi
      "${C[@]}" images check --snapshotter "$snap" >"$S/check.out" 2>&1
      "${C[@]}" images ls >"$S/ls.out" 2>&1
      local ok=1 ref target
      while read -r ref cfg mdig; do
        if ! grep -E "^$ref +[^ ]+ +sha256:[0-9a-f]{64} +complete \(([0-9]+)/\1\) .* true *$" "$S/check.out" >/dev/null; then
          ok=0; echo "    $ref not complete+unpacked"; continue
        fi
        target=$(awk -v r="$ref" '$1 == r {print $3}' "$S/ls.out")
        if [[ $mdig != null && $target != "$mdig" ]]; then
          ok=0; echo "    $ref target $target, expected $mdig"
        fi
        # The image's config digest (through the manifest, or the index).
        local got
        got=$("${C[@]}" content get "$target" | python3 -c '
import json, subprocess, sys
m = json.load(sys.stdin)
if "manifests" in m:
    d = [x for x in m["manifests"] if x.get("platform", {}).get("architecture") == "amd64"][0]["digest"]
    m = json.loads(subprocess.run(sys.argv[1:] + ["content", "get", d], capture_output=True).stdout)
print(m["config"]["digest"])' "${C[@]}")
        if [[ $got != "$cfg" ]]; then ok=0; echo "    $ref config $got, expected $cfg"; fi
      done < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
seen = set()
for i in j["images"]:
    if i["present"] and i["ref"] not in seen and i["platform"] == "linux/amd64":
        seen.add(i["ref"])
        print(i["ref"], i["config_digest"], i["index_digest"] or i["manifest_digest"] or "null")
' "$json")
      if ((ok)); then ok "$desc"; else bad "$desc"; sed 's/^/    /' "$S/check.out"; fi
      rm_all_images
    }

    for l in "${LAYOUTS[@]}"; do
      extra=()
      [[ $l == oci ]] && extra=(--base-name docker.io/library/app)
      import_check "containerd imports $l: app:v1+v2 complete, unpacked, right config" \
        "$S/$l/a.tar" "$S/$l/a.json" "${extra[@]}"
    done
    import_check "containerd imports oci with zstd layers" "$S/zl.tar" "$S/zl.json" --base-name docker.io/library/app
    import_check "containerd imports nested multi-platform index (--all-platforms)" \
      "$S/mp-nested.tar" "$S/mp-nested.json" --all-platforms --base-name docker.io/library/app
    import_check "containerd imports index with a missing platform (default platform only)" \
      "$S/mp-miss.tar" "$S/mp-miss.json"
    check_fails "containerd --all-platforms import fails on the missing platform" \
      "${C[@]}" images import --all-platforms "$S/mp-miss.tar"
    rm_all_images
    for l in "${LAYOUTS[@]}"; do
      for k in corrupt-layer missing-blob bad-diffid; do
        check_fails "containerd import of $l with $k fails" \
          "${C[@]}" images import --base-name docker.io/library/app "$S/f-$l-$k.tar"
        rm_all_images
      done
    done

    # Crash and restart a node.
    check "lab stop (SIGKILL) stops the node" bash -c "'$LAB' stop 1 '$LABDIR' && ! ctr -a '$LABDIR/node1/sock' --connect-timeout 1s version"
    check "lab start brings it back" bash -c "'$LAB' start 1 '$LABDIR' && '$LAB' ctr 1 '$LABDIR' -- version"
    check "lab down removes everything" bash -c "'$LAB' down '$LABDIR' && test ! -e '$LABDIR'"
  else
    bad "lab up 1"
    sed 's/^/    /' "$S/lab.out"
  fi
else
  skipped "containerd checks (containerd/ctr not installed)"
fi

echo "$pass passed, $fail failed, $skip skipped ($((SECONDS - T0)) s)"
((fail == 0))
