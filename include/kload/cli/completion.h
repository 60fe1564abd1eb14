#pragma once
// Shell completion scripts for bash, zsh and fish, generated from a description of
// the commands, so that they list exactly the commands and options the parser knows.

#include "kload/util/error.h"

#include <string>
#include <string_view>
#include <vector>

namespace kload::cli {

struct CompletionOption {
  std::vector<std::string> names;  // "-n", "--node"
  bool takes_value = false;
  std::string help;  // its first line
};

// What a command's positional arguments are, for completion.
enum class Positional { none, files, docker_images, words };

struct CompletionCommand {
  std::string name;
  std::string help;  // its first line
  std::vector<CompletionOption> options;
  Positional positional = Positional::none;
  std::vector<std::string> words;  // Positional::words: the choices
};

// The completion script for `shell` ("bash", "zsh" or "fish") of a program named
// "kload" with `commands`. Option values are completed only for --name (the kind
// clusters Docker knows); docker images come from `docker images`. Error (usage): any
// other shell, naming the three.
util::Result<std::string> completion_script(std::string_view shell, const std::vector<CompletionCommand>& commands);

} // namespace kload::cli
