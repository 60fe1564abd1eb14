#include "kload/source/docker.h"
#include "kload/util/text.h"

#include "kload/format/image_ref.h"

#include <csignal>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kload::source {

namespace {

using util::ErrorKind;

// inspect answers in well under a second; this only catches a hung daemon.
constexpr std::chrono::milliseconds inspect_timeout{60'000};

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
                      fmt::format("docker image inspect {}: unexpected output: {}", util::joined(refs), what));
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
  const std::string doing = "docker image inspect " + util::joined(refs);
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
                        fmt::format("no such image in Docker: {} (see docker images)", util::joined(missing, ", ")));
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
  util::SystemProcessRunner runner;
  return save_images(refs, runner, limits);
}

util::Result<SavedImages> save_images(const std::vector<std::string>& refs, util::ProcessRunner& runner,
                                      const format::ReadLimits& limits) {
  const std::string name = "docker save " + util::joined(refs);
  SavedImages saved;
  util::Result<format::ReadStats> read = util::fail(ErrorKind::bad_input, name + ": not read");
  // No deadline: a multi-GiB save takes as long as it takes, and a failed read ends it.
  auto ran = runner.stream(
      save_argv(refs),
      [&](int fd) -> util::Result<void> {
        read = format::read_archive_fd(fd, name, saved.set, limits);
        if (!read) {
          return std::unexpected(read.error());
        }
        return {};
      },
      std::chrono::milliseconds{0});
  if (!ran) {
    return util::fail(ErrorKind::bad_input, not_installed(name, ran.error()));
  }
  const auto& result = *ran;
  // A docker killed by SIGPIPE only died because the reader gave up first: the
  // reader's message is the cause. Otherwise Docker's own line says why better than a
  // truncated stream does.
  const bool docker_failed = result.exit_code != 0 && result.signal != SIGPIPE;
  if (docker_failed && (read || !last_line(result.err).empty())) {
    if (const auto missing = missing_images(result.err); !missing.empty()) {
      return util::fail(ErrorKind::bad_input,
                        fmt::format("{}: no such image in Docker: {}", name, util::joined(missing, ", ")));
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
