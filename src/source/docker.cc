#include "kload/source/docker.h"
#include "kload/util/text.h"

#include "kload/format/image_ref.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace kload::source {

namespace {

using util::ErrorKind;

// inspect answers in well under a second; this only catches a hung daemon.
constexpr std::chrono::milliseconds inspect_timeout{60'000};
// Enough of docker's stderr to quote its last line; the rest is dropped as it comes.
constexpr std::size_t stderr_keep = 64 * 1024;

using util::trim;

std::vector<std::string_view> nonblank_lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    if (const auto line = trim(text.substr(0, nl)); !line.empty()) {
      out.push_back(line);
    }
    if (nl == std::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
  }
  return out;
}

std::string last_line(std::string_view err) {
  const auto lines = nonblank_lines(err);
  return lines.empty() ? std::string() : std::string(lines.back());
}

std::string joined(const std::vector<std::string>& words, std::string_view sep = " ") {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) {
      out += sep;
    }
    out += w;
  }
  return out;
}

std::string why_failed(const util::ProcessResult& r) {
  auto why = last_line(r.err);
  if (!why.empty()) {
    return why;
  }
  return r.signal != 0 ? fmt::format("killed by signal {}", r.signal)
                       : fmt::format("exited with status {}", r.exit_code);
}

// The image names Docker says it does not have: from "No such image: NAME" lines, which
// the daemon words the same in every version (the prefix before it varies).
std::vector<std::string> missing_images(std::string_view err) {
  constexpr std::string_view marker = "No such image: ";
  std::vector<std::string> out;
  for (const auto line : nonblank_lines(err)) {
    if (const auto at = line.find(marker); at != std::string_view::npos) {
      out.emplace_back(trim(line.substr(at + marker.size())));
    }
  }
  return out;
}

std::string not_installed(const std::string& doing, const util::Error& e) {
  return fmt::format("{}: docker is not installed or not on PATH ({})", doing, e.message);
}

struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  }
};

util::Result<void> make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return util::fail(ErrorKind::io, std::string("pipe: ") + std::strerror(errno));
  }
  read_end.fd = fds[0];
  write_end.fd = fds[1];
  return {};
}

// A child whose stdout is a pipe the caller reads as a stream; stderr is collected by
// a thread. util::ProcessRunner captures stdout whole, which a multi-GiB save must
// not be.
class StreamingChild {
public:
  // Starts argv[0] (searched in PATH). Error (io): it cannot be started.
  util::Result<void> start(const std::vector<std::string>& argv) {
    Fd err_write;
    Fd out_write;
    if (auto r = make_pipe(out_, out_write); !r) {
      return r;
    }
    if (auto r = make_pipe(err_, err_write); !r) {
      return r;
    }
    Fd devnull;
    devnull.fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, devnull.fd, 0);
    posix_spawn_file_actions_adddup2(&actions, out_write.fd, 1);
    posix_spawn_file_actions_adddup2(&actions, err_write.fd, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // kload ignores SIGPIPE and handles SIGINT/SIGTERM itself; docker gets the defaults.
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> cargv;
    for (const auto& a : argv) {
      cargv.push_back(const_cast<char*>(a.c_str()));
    }
    cargv.push_back(nullptr);
    const int rc = ::posix_spawnp(&pid_, cargv[0], &actions, &attr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      pid_ = -1;
      return util::fail(ErrorKind::io, "cannot run " + argv[0] + ": " + std::strerror(rc));
    }
    err_thread_ = std::thread([this] {
      char buf[4096];
      ssize_t n = 0;
      while ((n = ::read(err_.fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) {
          err_text_.append(buf, static_cast<std::size_t>(n));
          if (err_text_.size() > 2 * stderr_keep) {
            err_text_.erase(0, err_text_.size() - stderr_keep);
          }
        }
      }
    });
    return {};
  }

  [[nodiscard]] int stdout_fd() const { return out_.fd; }

  // Reads and drops what is left of stdout (tar padding after the end marker), so the
  // child never dies of a closed pipe after a good save.
  void drain_stdout() {
    char buf[65536];
    ssize_t n = 0;
    while ((n = ::read(out_.fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    }
  }

  // Closes stdout (a child still writing then fails with EPIPE) and waits for the child.
  util::ProcessResult finish() {
    out_.reset();
    util::ProcessResult result;
    if (pid_ > 0) {
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
      if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
      }
    }
    if (err_thread_.joinable()) {
      err_thread_.join();
    }
    result.err = err_text_;
    return result;
  }

  ~StreamingChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
    }
    finish();
  }

private:
  Fd out_;
  Fd err_;
  pid_t pid_ = -1;
  std::thread err_thread_;
  std::string err_text_;
};

} // namespace

std::vector<std::string> inspect_argv(const std::vector<std::string>& refs) {
  std::vector<std::string> argv{"docker", "image", "inspect"};
  argv.insert(argv.end(), refs.begin(), refs.end());
  return argv;
}

util::Result<std::vector<DockerImage>> parse_inspect(std::string_view text, const std::vector<std::string>& refs) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  auto unexpected = [&](const std::string& what) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("docker image inspect {}: unexpected output: {}", joined(refs), what));
  };
  if (j.is_discarded() || !j.is_array()) {
    return unexpected("not a JSON array");
  }
  if (j.size() != refs.size()) {
    return unexpected(fmt::format("{} images described, {} asked for", j.size(), refs.size()));
  }
  std::vector<DockerImage> images;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const auto& e = j[i];
    if (!e.is_object() || !e.contains("Id") || !e["Id"].is_string()) {
      return unexpected(fmt::format("no Id for {}", refs[i]));
    }
    const auto id = util::Digest::parse(e["Id"].get<std::string>());
    if (!id) {
      return unexpected(fmt::format("{} has Id \"{}\", not a sha256 digest", refs[i], e["Id"].get<std::string>()));
    }
    DockerImage image;
    image.ref = refs[i];
    image.id = *id;
    if (e.contains("RepoTags") && e["RepoTags"].is_array()) {
      for (const auto& t : e["RepoTags"]) {
        if (!t.is_string()) {
          continue;
        }
        if (auto n = format::normalize_image_name(t.get<std::string>()); n) {
          image.repo_tags.push_back(*n);
        }
      }
    }
    if (e.contains("RootFS") && e["RootFS"].is_object() && e["RootFS"].contains("Layers") &&
        e["RootFS"]["Layers"].is_array()) {
      for (const auto& l : e["RootFS"]["Layers"]) {
        if (auto d = l.is_string() ? util::Digest::parse(l.get<std::string>()) : std::nullopt; d) {
          image.diff_ids.push_back(*d);
        }
      }
    }
    auto field = [&](const char* key) {
      return e.contains(key) && e[key].is_string() ? e[key].get<std::string>() : std::string();
    };
    image.platform = format::Platform{field("Os"), field("Architecture"), field("Variant")};
    images.push_back(std::move(image));
  }
  return images;
}

util::Result<std::vector<DockerImage>> inspect_images(const std::vector<std::string>& refs,
                                                      util::ProcessRunner& runner) {
  const std::string doing = "docker image inspect " + joined(refs);
  auto r = runner.run(inspect_argv(refs), {}, inspect_timeout);
  if (!r) {
    return util::fail(ErrorKind::bad_input, not_installed(doing, r.error()));
  }
  if (r->timed_out) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: no answer from Docker within {} s", doing, inspect_timeout.count() / 1000));
  }
  if (r->exit_code != 0) {
    if (const auto missing = missing_images(r->err); !missing.empty()) {
      return util::fail(ErrorKind::bad_input,
                        fmt::format("no such image in Docker: {} (see docker images)", joined(missing, ", ")));
    }
    return util::fail(ErrorKind::bad_input, fmt::format("{}: {}", doing, why_failed(*r)));
  }
  return parse_inspect(r->out, refs);
}

std::vector<std::string> save_argv(const std::vector<std::string>& refs) {
  std::vector<std::string> argv{"docker", "save"};
  argv.insert(argv.end(), refs.begin(), refs.end());
  return argv;
}

util::Result<SavedImages> save_images(const std::vector<std::string>& refs, const format::ReadLimits& limits) {
  const std::string name = "docker save " + joined(refs);
  StreamingChild child;
  if (auto started = child.start(save_argv(refs)); !started) {
    return util::fail(ErrorKind::bad_input, not_installed(name, started.error()));
  }
  SavedImages saved;
  auto read = format::read_archive_fd(child.stdout_fd(), name, saved.set, limits);
  if (read) {
    child.drain_stdout();
  }
  const auto result = child.finish();
  // A docker killed by SIGPIPE only died because the reader gave up first: the
  // reader's message is the cause. Otherwise Docker's own line says why better than a
  // truncated stream does.
  const bool docker_failed = result.exit_code != 0 && result.signal != SIGPIPE;
  if (docker_failed && (read || !last_line(result.err).empty())) {
    if (const auto missing = missing_images(result.err); !missing.empty()) {
      return util::fail(ErrorKind::bad_input,
                        fmt::format("{}: no such image in Docker: {}", name, joined(missing, ", ")));
    }
    return util::fail(ErrorKind::bad_input, fmt::format("{}: docker failed: {}", name, why_failed(result)));
  }
  if (!read) {
    return std::unexpected(read.error());
  }
  if (result.exit_code != 0) {
    return util::fail(ErrorKind::bad_input, fmt::format("{}: docker failed: {}", name, why_failed(result)));
  }
  saved.stats = *read;
  return saved;
}

} // namespace kload::source
