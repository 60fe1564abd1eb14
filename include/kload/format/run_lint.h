#pragma once
// Warnings about image configurations that make a pod crash-loop under Kubernetes.

#include "kload/format/model.h"

#include <string>
#include <vector>

namespace kload::format {

// The command line the container runs (Entrypoint then Cmd), shell-form scripts shown
// as written ("/usr/sbin/sshd && /bin/bash"); "(none)" when both are empty.
std::string describe_command(const RunConfig& run);

// One line per problem, each saying why it fails and what to do: no command at all;
// a shell-form script that starts a daemon which forks into the background (sshd
// without -D, nginx without "daemon off", service/init.d scripts) or whose last
// command is a bare interactive shell that exits at once without a TTY.
std::vector<std::string> lint_run_config(const RunConfig& run);

} // namespace kload::format
