#include "kload/cli/completion.h"

#include "kload/util/process.h"
#include "kload/util/text.h"

#include <algorithm>

#include <fmt/format.h>

namespace kload::cli {

namespace {

constexpr const char* clusters_command =
    R"(docker ps -a --filter label=io.x-k8s.kind.cluster --format '{{.Label "io.x-k8s.kind.cluster"}}' 2>/dev/null | sort -u)";
constexpr const char* images_command =
    R"(docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -v '<none>')";

bool is_name_option(const CompletionOption& o) {
  return std::find(o.names.begin(), o.names.end(), "--name") != o.names.end();
}


// --- bash ---

std::string bash_case(const CompletionCommand& c) {
  std::vector<std::string> flags;
  std::vector<std::string> valued;
  for (const auto& o : c.options) {
    auto& into = o.takes_value ? valued : flags;
    into.insert(into.end(), o.names.begin(), o.names.end());
  }
  const char* positional = c.positional == Positional::files           ? "files"
                           : c.positional == Positional::docker_images ? "docker_images"
                           : c.positional == Positional::words         ? "words"
                                                                       : "";
  return fmt::format("  {}) flags={}; valued={}; positional={}; words={} ;;\n", c.name,
                     util::shell_quote(util::joined(flags)), util::shell_quote(util::joined(valued)), positional,
                     util::shell_quote(util::joined(c.words)));
}

std::string bash_script(const std::vector<CompletionCommand>& commands) {
  std::vector<std::string> names;
  std::string cases;
  for (const auto& c : commands) {
    names.push_back(c.name);
    cases += bash_case(c);
  }
  return fmt::format(R"SH(# bash completion for kload. Load it with: source <(kload completion bash)
# or save it as ~/.local/share/bash-completion/completions/kload
_kload_clusters() {{ {clusters}; }}
_kload_docker_images() {{ {images}; }}
_kload() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
  if declare -F _get_comp_words_by_ref >/dev/null; then
    _get_comp_words_by_ref -n : cur prev  # image names hold ':'
  fi
  COMPREPLY=()
  if [ "$COMP_CWORD" -eq 1 ]; then
    mapfile -t COMPREPLY < <(compgen -W {commands} -- "$cur")
    return
  fi
  local flags valued positional words
  case ${{COMP_WORDS[1]}} in
{cases}  *) return ;;
  esac
  case " $valued " in
  *" $prev "*)
    if [ "$prev" = --name ]; then
      mapfile -t COMPREPLY < <(compgen -W "$(_kload_clusters)" -- "$cur")
    fi
    return ;;
  esac
  case $cur in
  -*) mapfile -t COMPREPLY < <(compgen -W "$flags $valued" -- "$cur") ;;
  *)
    case $positional in
    files) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
    docker_images) mapfile -t COMPREPLY < <(compgen -W "$(_kload_docker_images)" -- "$cur") ;;
    words) mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur") ;;
    esac ;;
  esac
  if declare -F __ltrim_colon_completions >/dev/null; then
    __ltrim_colon_completions "$cur"
  fi
}}
complete -F _kload kload
)SH",
                     fmt::arg("clusters", clusters_command), fmt::arg("images", images_command),
                     fmt::arg("commands", util::shell_quote(util::joined(names) + " --help --version")),
                     fmt::arg("cases", cases));
}

// --- zsh ---

// A description as zsh's _arguments and _describe take it: one line, no brackets.
std::string zsh_text(std::string text) {
  for (auto& ch : text) {
    if (ch == '[') {
      ch = '(';
    } else if (ch == ']') {
      ch = ')';
    } else if (ch == '\\') {
      ch = '/';
    }
  }
  return text;
}

std::string zsh_option(const CompletionOption& o) {
  const std::string help = "[" + zsh_text(o.help) + "]";
  const std::string value = !o.takes_value ? "" : is_name_option(o) ? ":cluster:_kload_clusters" : ":value: ";
  if (o.names.size() == 1) {
    return util::shell_quote("*" + o.names[0] + help + value);
  }
  return "'*'{" + util::joined(o.names, ",") + "}" + util::shell_quote(help + value);
}

std::string zsh_case(const CompletionCommand& c) {
  std::string out = "  " + c.name + ")\n    _arguments -s";
  for (const auto& o : c.options) {
    out += " \\\n      " + zsh_option(o);
  }
  switch (c.positional) {
  case Positional::files:
    out += " \\\n      '*:file:_files'";
    break;
  case Positional::docker_images:
    out += " \\\n      '*:image:_kload_docker_images'";
    break;
  case Positional::words:
    out += " \\\n      " + util::shell_quote("1:argument:(" + util::joined(c.words) + ")");
    break;
  case Positional::none:
    break;
  }
  return out + " ;;\n";
}

std::string zsh_script(const std::vector<CompletionCommand>& commands) {
  std::string described;
  std::string cases;
  for (const auto& c : commands) {
    described += "    " + util::shell_quote(c.name + ":" + zsh_text(c.help)) + "\n";
    cases += zsh_case(c);
  }
  return fmt::format(R"SH(#compdef kload
# zsh completion for kload. Load it with: source <(kload completion zsh)
# or save it as _kload in a directory of $fpath
_kload_clusters() {{
  local -a clusters
  clusters=(${{(f)"$({clusters})"}})
  compadd -a clusters
}}
_kload_docker_images() {{
  local -a images
  images=(${{(f)"$({images})"}})
  compadd -a images
}}
_kload() {{
  local -a commands
  commands=(
{described}  )
  if (( CURRENT == 2 )); then
    _describe -t commands 'kload command' commands
    return
  fi
  local cmd=$words[2]
  shift words
  (( CURRENT-- ))
  case $cmd in
{cases}  esac
}}
if [ "$funcstack[1]" = _kload ]; then
  _kload "$@"
else
  compdef _kload kload
fi
)SH",
                     fmt::arg("clusters", clusters_command), fmt::arg("images", images_command),
                     fmt::arg("described", described), fmt::arg("cases", cases));
}

// --- fish ---

std::string fish_quote(const std::string& text) {
  std::string out = "'";
  for (const char ch : text) {
    if (ch == '\\' || ch == '\'') {
      out += '\\';
    }
    out += ch;
  }
  return out + "'";
}

std::string fish_lines(const CompletionCommand& c) {
  const std::string when = "complete -c kload -n " + fish_quote("__fish_seen_subcommand_from " + c.name);
  std::string out;
  for (const auto& o : c.options) {
    std::string names;
    for (const auto& n : o.names) {
      names += n.starts_with("--") ? " -l " + n.substr(2) : " -s " + n.substr(1);
    }
    std::string value;
    if (o.takes_value) {
      value = is_name_option(o) ? " -x -a " + fish_quote(std::string("(") + clusters_command + ")") : " -x";
    }
    out += when + names + value + " -d " + fish_quote(o.help) + "\n";
  }
  switch (c.positional) {
  case Positional::files:
    out += when + " -F\n";
    break;
  case Positional::docker_images:
    out += when + " -a " + fish_quote(std::string("(") + images_command + ")") + "\n";
    break;
  case Positional::words:
    out += when + " -a " + fish_quote(util::joined(c.words)) + "\n";
    break;
  case Positional::none:
    break;
  }
  return out;
}

std::string fish_script(const std::vector<CompletionCommand>& commands) {
  std::string out = "# fish completion for kload. Load it with: kload completion fish | source\n"
                    "# or save it as ~/.config/fish/completions/kload.fish\n"
                    "complete -c kload -f\n";
  for (const auto& c : commands) {
    out += "complete -c kload -n __fish_use_subcommand -a " + c.name + " -d " + fish_quote(c.help) + "\n";
  }
  for (const auto& c : commands) {
    out += fish_lines(c);
  }
  return out;
}

} // namespace

util::Result<std::string> completion_script(std::string_view shell, const std::vector<CompletionCommand>& commands) {
  if (shell == "bash") {
    return bash_script(commands);
  }
  if (shell == "zsh") {
    return zsh_script(commands);
  }
  if (shell == "fish") {
    return fish_script(commands);
  }
  return util::fail(util::ErrorKind::usage,
                    fmt::format("no completion for shell \"{}\": kload completes bash, zsh and fish", shell));
}

} // namespace kload::cli
