# shellcheck shell=bash
# Sourced by tools/lab: nodes as Docker containers, shaped as kind shapes them.
#
# A node image per containerd version (kload-lab-node:VERSION-HASH), built without a
# registry: a Debian bookworm root file system (debootstrap, imported once as
# kload-lab-base) plus containerd, ctr, the runc shim, runc and crictl from
# tools/thirdparty (Debian's containerd for 1.6), kind's containerd configuration and
# an entrypoint that runs sshd and keeps containerd running (as systemd does in kind's
# nodes: a containerd that dies is started again).

LAB_LABEL=dev.kload.lab
BASE_PACKAGES=openssh-server,containerd,runc,iproute2,procps,ca-certificates,zstd,mount
BASE_IMAGE=kload-lab-base:bookworm-$(printf '%s' "$BASE_PACKAGES" | sha256sum | cut -c1-12)
SANDBOX_IMAGE=registry.k8s.io/pause:3.10

docker_ok() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The base image: debootstrap once per machine, then `docker import`.
ensure_base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || die "debootstrap is not installed (tools/dev deps installs it)"
  local root
  root=$(mktemp -d "${TMPDIR:-/tmp}/kload-lab-rootfs.XXXXXX")
  echo "$PROG: building the node base image $BASE_IMAGE (debootstrap bookworm; a few minutes, once per machine)" >&2
  if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" >"$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2
    rm -rf -- "$root"
    die "debootstrap failed (log: $root.log)"
  fi
  # Documentation and apt lists are dead weight in every node.
  rm -rf -- "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*
  tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null || { rm -rf -- "$root"; die "docker import failed"; }
  rm -rf -- "$root" "$root.log"
}

# containerd's configuration as kind's node image has it: CRI on, snapshotter SNAP,
# discard_unpacked_layers, runc through the v2 shim. 2.x gets the version 3 layout
# (io.containerd.cri.v1.images), 1.x the version 2 layout kind ships.
node_config() {
  local version=$1 snap=$2
  if [[ $version == 2.x ]]; then
    cat <<EOF
version = 3
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "$snap"
  discard_unpacked_layers = true
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$SANDBOX_IMAGE"
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
EOF
  else
    cat <<EOF
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  discard_unpacked_layers = true
  snapshotter = "$snap"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  tolerate_missing_hugepages_controller = true
EOF
  fi
}

# PID 1 of a node: sshd, then containerd, started again whenever it exits (kind's
# nodes run it under systemd with Restart=always). SIGTERM stops both.
node_entrypoint() {
  cat <<'EOF'
#!/bin/sh
mkdir -p /run/sshd /run/containerd /var/log
# cgroup controllers are bind-mounted read-only into an unprivileged container; runc
# needs to write them to start a container on the node.
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/mounts); do
  mount -o remount,bind,rw "$m" 2>/dev/null || true
done
/usr/sbin/sshd -E /var/log/sshd.log
stop=0
trap 'stop=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT
while [ "$stop" = 0 ]; do
  containerd --config /etc/containerd/config.toml >>/var/log/containerd.log 2>&1 &
  pid=$!
  wait "$pid"
  [ "$stop" = 0 ] && sleep 0.2
done
EOF
}

# The node image for containerd VERSION, built when missing. Prints its name.
node_image() {
  local version=$1 snap=$2 ctx hash image bins=()
  case $version in
    2.x) bins=(containerd-2.x runc crictl) ;;
    1.7) bins=(containerd-1.7 runc crictl) ;;
    1.6) bins=(crictl) ;;
    *) usage_error "bad --containerd '$version' (2.x|1.7|1.6)" ;;
  esac
  hash=$( { cat "$HERE/lab-docker.sh"; "$HERE/thirdparty" versions; echo "$BASE_IMAGE $snap"; } | sha256sum | cut -c1-12)
  image=kload-lab-node:$version-$snap-$hash
  if docker image inspect "$image" >/dev/null 2>&1; then
    printf '%s\n' "$image"
    return 0
  fi
  # Another engine of this machine that has it (tools/engine's users): copied, not built.
  if [[ -n ${KLOAD_LAB_IMAGE_SOURCE:-} ]] && DOCKER_HOST=$KLOAD_LAB_IMAGE_SOURCE docker image inspect "$image" >/dev/null 2>&1; then
    echo "$PROG: copying node image $image from $KLOAD_LAB_IMAGE_SOURCE" >&2
    if DOCKER_HOST=$KLOAD_LAB_IMAGE_SOURCE docker save "$image" | docker load -q >/dev/null; then
      printf '%s\n' "$image"
      return 0
    fi
    echo "$PROG: copying failed; building it here" >&2
  fi
  ensure_base_image
  "$HERE/thirdparty" build "${bins[@]}" >&2 || die "cannot build the node's programs"
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/kload-lab-image.XXXXXX")
  mkdir -p "$ctx/bin"
  local b
  for b in "${bins[@]}"; do cp -a "$("$HERE/thirdparty" dir "$b")"/. "$ctx/bin/"; done
  rm -f "$ctx/bin/.complete"
  node_config "$version" "$snap" >"$ctx/config.toml"
  node_entrypoint >"$ctx/entrypoint"
  printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 10\n' >"$ctx/crictl.yaml"
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY bin/ /usr/local/bin/
COPY config.toml /etc/containerd/config.toml
COPY crictl.yaml /etc/crictl.yaml
COPY entrypoint /usr/local/bin/kload-lab-node
RUN chmod 0755 /usr/local/bin/kload-lab-node && mkdir -p /root/.ssh && chmod 0700 /root/.ssh
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/kload-lab-node"]
EOF
  echo "$PROG: building node image $image" >&2
  if ! docker build -q --network none -t "$image" "$ctx" >/dev/null 2>"$ctx.log"; then
    cat "$ctx.log" >&2
    rm -rf -- "$ctx"
    die "docker build of the node image failed"
  fi
  rm -rf -- "$ctx" "$ctx.log"
  printf '%s\n' "$image"
}

# kind's node names: CLUSTER-control-plane, CLUSTER-worker, CLUSTER-worker2, ...
docker_node_name() {
  local cluster=$1 i=$2
  if ((i == 1)); then
    printf '%s-control-plane\n' "$cluster"
  elif ((i == 2)); then
    printf '%s-worker\n' "$cluster"
  else
    printf '%s-worker%s\n' "$cluster" "$((i - 1))"
  fi
}

docker_node_role() { if (($1 == 1)); then echo control-plane; else echo worker; fi; }

# How node containers get the rights containerd needs inside: --privileged where the
# engine grants it, else every capability the sandbox allows (measured here: all but
# CAP_SYS_RESOURCE) with seccomp and AppArmor off.
docker_rights() {
  local image=$1
  local id ok=1
  # create + start + rm, not run --rm: a container whose start fails is not removed
  # by --rm and would be left behind.
  if id=$(docker create --privileged --label "$LAB_LABEL=probe" --entrypoint /bin/true "$image" 2>/dev/null); then
    docker start -a "$id" >/dev/null 2>&1 && ok=0
    docker rm -f "$id" >/dev/null 2>&1 || true
  fi
  if ((ok == 0)); then
    echo --privileged
  else
    echo --cap-add=ALL --cap-drop=SYS_RESOURCE --security-opt=seccomp=unconfined --security-opt=apparmor=unconfined
  fi
}

docker_uri() { printf 'docker://%s\n' "$(docker_node_name "$(cat "$1/cluster")" "$2")"; }

docker_node_ready() {
  local name=$1
  docker exec "$name" ctr --connect-timeout 1s version >/dev/null 2>&1
}

docker_wait_node() {
  local name=$1 deadline
  deadline=$((SECONDS + START_TIMEOUT))
  until docker_node_ready "$name"; do
    if [[ $(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null) != true ]]; then
      echo "$PROG: node container $name is not running; its log:" >&2
      docker logs --tail 20 "$name" >&2 2>&1 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "$PROG: containerd in $name not up after ${START_TIMEOUT}s; its log:" >&2
      docker exec "$name" tail -n 20 /var/log/containerd.log >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

# ssh: one client key for the lab, every node's host key collected into known_hosts,
# and DIR/ssh_config with a Host entry per node name (its address on the lab network).
docker_ssh_setup() {
  local dir=$1 n=$2 i name ip
  : >"$dir/known_hosts"
  : >"$dir/ssh_config"
  for ((i = 1; i <= n; i++)); do
    name=$(docker_node_name "$(cat "$dir/cluster")" "$i")
    ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$(cat "$dir/network")\").IPAddress}}" "$name")
    docker cp "$dir/id_ed25519.pub" "$name:/root/.ssh/authorized_keys" >/dev/null
    docker exec "$name" sh -c 'chown root:root /root/.ssh/authorized_keys; chmod 0600 /root/.ssh/authorized_keys'
    printf '%s %s\n' "$ip" "$(docker exec "$name" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1-2)" >>"$dir/known_hosts"
    cat >>"$dir/ssh_config" <<EOF
Host $name
  HostName $ip
  User root
  IdentityFile $dir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
EOF
    echo "$ip" >"$dir/ip$i"
  done
}

docker_lab_up() {
  local n=$1 dir=$2 version=$3 cluster=$4 snap=$5 image rights i name net failed=0
  docker_ok || die "the Docker engine does not answer (docker version); is dockerd running?"
  image=$(node_image "$version" "${snap:-overlayfs}")
  # shellcheck disable=SC2207 # words of docker_rights are separate flags
  rights=($(docker_rights "$image"))
  mkdir -p "$dir"
  : >"$dir/$MARKER"
  echo docker >"$dir/mode"
  echo "$n" >"$dir/nodes"
  echo "$cluster" >"$dir/cluster"
  net=kload-lab-$cluster
  echo "$net" >"$dir/network"
  if ! docker network create --label "$LAB_LABEL=$dir" "$net" >/dev/null 2>"$dir/network.err"; then
    cat "$dir/network.err" >&2
    die "cannot create the lab network $net (is a lab named $cluster already up?)"
  fi
  ssh-keygen -q -t ed25519 -N '' -C kload-lab -f "$dir/id_ed25519" </dev/null
  for ((i = 1; i <= n; i++)); do
    name=$(docker_node_name "$cluster" "$i")
    # /var/lib/containerd on a volume: overlayfs cannot be stacked on the
    # container's own overlay root. /run on a tmpfs, as in kind's nodes.
    if ! docker run -d --name "$name" --hostname "$name" \
        --label "io.x-k8s.kind.cluster=$cluster" --label "io.x-k8s.kind.role=$(docker_node_role "$i")" \
        --label "$LAB_LABEL=$dir" --network "$net" "${rights[@]}" \
        --tmpfs /run --tmpfs /tmp -v /var/lib/containerd "$image" >/dev/null 2>>"$dir/run.err"; then
      cat "$dir/run.err" >&2
      failed=1
      break
    fi
  done
  if ((failed == 0)); then
    for ((i = 1; i <= n; i++)); do
      docker_wait_node "$(docker_node_name "$cluster" "$i")" || failed=1
    done
  fi
  if ((failed == 0)); then
    docker_ssh_setup "$dir" "$n" || failed=1
  fi
  if ((failed)); then
    docker_lab_down "$dir" || true
    die "lab did not start"
  fi
  for ((i = 1; i <= n; i++)); do docker_uri "$dir" "$i"; done
}

# Removes exactly what docker_lab_up made: the containers and network labelled with
# this lab's directory, and the containers' anonymous volumes.
docker_lab_down() {
  local dir=$1 ids
  ids=$(docker ps -aq --filter "label=$LAB_LABEL=$dir")
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086 # one id per word
    docker rm -f -v $ids >/dev/null
  fi
  ids=$(docker network ls -q --filter "label=$LAB_LABEL=$dir")
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086
    docker network rm $ids >/dev/null
  fi
}

docker_node_container() { docker_node_name "$(cat "$1/cluster")" "$2"; }

# stop: the node goes down as a whole: SIGKILL of its container, or `docker stop`
# (SIGTERM) with --term.
docker_stop() {
  local dir=$1 i=$2 sig=$3 name
  name=$(docker_node_container "$dir" "$i")
  if [[ $sig == KILL ]]; then
    docker kill "$name" >/dev/null
  else
    docker stop -t "$STOP_TIMEOUT" "$name" >/dev/null
  fi
}

docker_start() {
  local dir=$1 i=$2 name
  name=$(docker_node_container "$dir" "$i")
  if [[ $(docker inspect -f '{{.State.Running}}' "$name") != true ]]; then
    docker start "$name" >/dev/null
    # A restarted container gets its address again, maybe another one.
    docker_ssh_setup "$dir" "$(cat "$dir/nodes")"
  fi
  docker_wait_node "$name"
}
