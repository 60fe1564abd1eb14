#include "kload/format/run_lint.h"

#include <fmt/format.h>


namespace kload::format {

namespace {

std::vector<std::string> command_words(const RunConfig& run) {
  std::vector<std::string> words;
  if (run.entrypoint) {
    words = *run.entrypoint;
  }
  if (run.cmd) {
    words.insert(words.end(), run.cmd->begin(), run.cmd->end());
  }
  return words;
}

bool is_shell(const std::string& w) {
  return w == "/bin/sh" || w == "sh" || w == "/bin/bash" || w == "bash" || w == "/bin/ash" ||
         w == "/usr/bin/bash" || w == "/usr/bin/sh";
}

// The script of a shell-form command ("sh -c SCRIPT ..."), or empty.
std::string shell_script(const std::vector<std::string>& words) {
  if (words.size() >= 3 && is_shell(words[0]) && words[1] == "-c") {
    return words[2];
  }
  return {};
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\n");
  const auto e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// Splits a script at the command separators a human would read as "then".
// Text from the image's config as quoted in a warning: at most about 120 characters.
std::string shown(const std::string& text) {
  constexpr std::size_t most = 120;
  return text.size() <= most ? text : text.substr(0, most - 3) + "...";
}

// The commands of a shell script, split at "&&", "||", ";", newlines and a lone "&".
// A plain scan: std::regex recurses per character and overflows the stack on long
// scripts (a config is attacker-controlled input).
std::vector<std::string> split_commands(const std::string& script) {
  std::vector<std::string> out;
  std::size_t start = 0;
  auto cut = [&](std::size_t end, std::size_t next) {
    auto c = trim(script.substr(start, end - start));
    if (!c.empty()) {
      out.push_back(std::move(c));
    }
    start = next;
  };
  for (std::size_t i = 0; i < script.size(); ++i) {
    const char c = script[i];
    const bool doubled = i + 1 < script.size() && script[i + 1] == c;
    if ((c == '&' || c == '|') && doubled) {
      cut(i, i + 2);
      ++i;
    } else if (c == ';' || c == '\n' || c == '&') {
      cut(i, i + 1);
    }
  }
  cut(script.size(), script.size());
  return out;
}

std::string first_word(const std::string& cmd) {
  auto w = cmd.substr(0, cmd.find_first_of(" \t"));
  if (w == "exec" && cmd.size() > 5) {
    return first_word(trim(cmd.substr(5)));
  }
  return w;
}

std::string basename_of(const std::string& w) {
  const auto slash = w.rfind('/');
  return slash == std::string::npos ? w : w.substr(slash + 1);
}

// A daemon that forks into the background unless told otherwise, and how to keep it
// in the foreground; empty when `cmd` is not such a daemon.
std::string daemon_fix(const std::string& cmd) {
  const auto prog = basename_of(first_word(cmd));
  const auto has = [&](const char* s) { return cmd.find(s) != std::string::npos; };
  if (prog == "sshd" && !has(" -D")) {
    return fmt::format("{} -D", first_word(cmd));
  }
  if (prog == "nginx" && !has("daemon off")) {
    return "nginx -g 'daemon off;'";
  }
  if ((prog == "httpd" || prog == "apache2ctl" || prog == "apachectl") && !has("FOREGROUND")) {
    return fmt::format("{} -DFOREGROUND", first_word(cmd));
  }
  if ((prog == "crond" || prog == "cron") && !has(" -f")) {
    return fmt::format("{} -f", first_word(cmd));
  }
  if (prog == "service" || prog == "systemctl" || first_word(cmd).starts_with("/etc/init.d/")) {
    return "the daemon's own binary with its foreground flag";
  }
  return {};
}

} // namespace

std::string describe_command(const RunConfig& run) {
  const auto words = command_words(run);
  if (words.empty()) {
    return "(none)";
  }
  if (const auto script = shell_script(words); !script.empty()) {
    return script;
  }
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) {
      out += ' ';
    }
    out += w.find_first_of(" \t\"'") == std::string::npos ? w : "\"" + w + "\"";
  }
  return out;
}

std::vector<std::string> lint_run_config(const RunConfig& run) {
  std::vector<std::string> warnings;
  const auto words = command_words(run);
  if (words.empty()) {
    warnings.emplace_back(
        "no Entrypoint and no Cmd: the container has nothing to run, so the pod fails unless "
        "its spec sets a command; add CMD or ENTRYPOINT to the image");
    return warnings;
  }
  const auto script = shell_script(words);
  if (script.empty()) {
    if (const auto fix = daemon_fix(describe_command(run)); !fix.empty()) {
      warnings.push_back(fmt::format(
          "{} forks into the background and the container's main process exits at once, so "
          "Kubernetes restarts the pod forever (CrashLoopBackOff); run it in the foreground: {}",
          shown(basename_of(words[0])), shown(fix)));
    }
    return warnings;
  }
  const auto commands = split_commands(script);
  if (commands.empty()) {
    return warnings;  // only separators: ";", "&&"
  }
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const auto fix = daemon_fix(commands[i]);
    if (fix.empty()) {
      continue;
    }
    const bool last = i + 1 == commands.size();
    const std::string after =
        last ? "nothing stays in the foreground"
             : fmt::format("\"{}\" is what keeps the container alive", shown(commands.back()));
    warnings.push_back(fmt::format(
        "\"{}\": {} forks into the background and {}; {}so the container exits with code 0 and "
        "Kubernetes restarts it forever (CrashLoopBackOff). Run the service in the foreground as "
        "the last command, e.g. \"exec {}\"",
        shown(script), shown(basename_of(first_word(commands[i]))), after,
        !last && is_shell(first_word(commands.back()))
            ? fmt::format("{} exits at once without a TTY, ", shown(commands.back()))
            : std::string(),
        shown(fix)));
    return warnings;
  }
  if (is_shell(first_word(commands.back())) && commands.back() == first_word(commands.back())) {
    warnings.push_back(fmt::format(
        "\"{}\": the last command is an interactive shell, which exits at once without a TTY, "
        "so the container exits with code 0 and Kubernetes restarts it forever "
        "(CrashLoopBackOff); end with a long-running foreground process",
        shown(script)));
  }
  return warnings;
}

} // namespace kload::format
