// `kload docker-image`: images from the local Docker engine, saved only when some
// node lacks something.
//
// Passes:
//   1. nodes: --node URIs, or the kind cluster's node containers
//   2. inspect: one `docker image inspect` of every image: IDs, tags, platform
//   3. pre-check: one round trip per node, in parallel (the one a load begins with):
//      does every name already point, complete, at this image?
//   4. save: only if some node said no, one `docker save` of the images lacked, read
//      once as a stream
//   5. load: load::load of those images into exactly the nodes that said no, planned
//      from their pre-check; its plan skips, retags or sends per image, as for
//      image-archive
//   6. remember (cache): which config a containerd-store index stands for, so the
//      next pre-check recognises the image without a save
//   7. --watch: follow `docker events` for images; when an ID changes, passes 2-6 again
//
// What to do at each pass is decided by load/docker_plan.h, tested with plain values;
// this file runs the passes and prints.

#include "kload/cache/cache.h"
#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/load/docker_plan.h"
#include "kload/load/image_names.h"
#include "kload/load/loader.h"
#include "kload/source/docker.h"
#include "kload/util/human.h"
#include "kload/util/parallel.h"
#include "kload/util/temp_dir.h"
#include "kload/util/text.h"

#include <cerrno>
#include <chrono>
#include <ctime>
#include <functional>
#include <optional>
#include <unistd.h>
#include <fmt/format.h>

namespace kload::cli {

using util::Result;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}


// A Docker image as the pre-check's report shows it: its names and Docker's ID.
format::Image stand_in(const load::DockerWanted& w) {
  format::Image image;
  image.names = w.names;
  image.id = w.docker.id;
  image.platform = w.docker.platform;
  image.source = "docker";
  return image;
}

// A report per node; those the pre-check settled (they failed, or hold everything)
// are complete and told to `observer`, the others are filled in by the load.
load::LoadReport settled_report(const std::vector<load::Target>& targets, const std::vector<load::NodeCheck>& checks,
                                const std::vector<format::Image>& stand_ins, load::Observer& observer) {
  load::LoadReport report;
  report.nodes.resize(targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    auto& r = report.nodes[i];
    r.node = targets[i].uri.display();
    r.uri = targets[i].uri.text;
    r.ctr_calls = targets[i].client->calls();
    r.seconds = checks[i].seconds;
    if (checks[i].failed()) {
      r.status = load::NodeStatus::failed;
      r.error = checks[i].error;
      r.error_kind = util::cancelled_by() != 0 ? util::ErrorKind::interrupted : util::ErrorKind::node;
      for (const auto& image : stand_ins) {
        r.lacks.push_back(&image);  // not known to hold any
      }
      observer.finished(r);
    } else if (checks[i].holds_all()) {
      plan::NodePlan plan;
      for (const auto& image : stand_ins) {
        plan.steps.push_back(plan::ImageStep{&image, plan::Action::skip, "", {}});
        r.images.push_back(load::ImageOutcome{&image, plan::Action::skip, {}, ""});
      }
      observer.planned(r.node, plan);
      observer.finished(r);
    }
  }
  return report;
}

// What one `docker save` gave, narrowed to the wanted images, one platform each.
// The load's reports point into it.
struct SavedWanted {
  std::vector<load::DockerWanted> wanted;  // the images saved
  source::SavedImages saved;
  std::vector<const format::Image*> images;
};

// Runs `docker save` of the images lacked, reads it once, keeps what was wanted and
// warns about tags that moved since inspect. Error (bad_input): as save_images,
// keep_wanted and choose_images.
Result<SavedWanted> save_wanted(const std::vector<load::DockerWanted>& wanted, const load::SavePlan& plan,
                                const TargetOptions& options, std::size_t node_count, Console& console) {
  const std::string input = "docker save " + util::joined(plan.save_refs);
  console.line(fmt::format("{}: needed by {} of {} node(s)", input, plan.needy.size(), node_count));
  const auto start = Clock::now();
  auto saved = source::save_images(plan.save_refs);
  if (!saved) {
    return std::unexpected(saved.error());
  }
  for (const auto& w : saved->set.warnings) {
    console.warn(w);
  }
  console.line(fmt::format("docker save: read {} in {}", util::human_bytes(saved->stats.bytes_expanded),
                           util::human_seconds(seconds_since(start))));
  SavedWanted out{{}, std::move(*saved), {}};
  for (const auto j : plan.save) {
    out.wanted.push_back(wanted[j]);
  }
  if (auto kept = load::keep_wanted(out.saved.set, out.wanted, input); !kept) {
    return std::unexpected(kept.error());
  }
  auto images = load::choose_images(out.saved.set, options.platform, "");
  if (!images) {
    return std::unexpected(images.error());
  }
  out.images = std::move(*images);
  for (const auto& w : out.wanted) {
    const auto* loaded = load::loaded_image(out.images, w);
    if (loaded != nullptr && w.platform_ok && !load::saved_as_inspected(out.saved.set, w, *loaded)) {
      console.warn(fmt::format("{} changed in Docker while kload ran (inspect said {}, docker save wrote {}); loading "
                               "what was saved",
                               w.names.front(), w.docker.id.str(), loaded->id.str()));
    }
  }
  return out;
}

// Puts the load's node reports in place of the needy nodes' pre-check reports, with
// the pre-check's time and the images it found held as present (the load's ctr_calls
// count the pre-check already: the node's client is the same).
void merge_loaded(load::LoadReport& report, const load::LoadReport& loaded, const load::SavePlan& plan,
                  const std::vector<format::Image>& stand_ins) {
  for (std::size_t k = 0; k < plan.needy.size(); ++k) {
    auto& r = report.nodes[plan.needy[k]];
    const double precheck_seconds = r.seconds;
    r = loaded.nodes[k];
    r.seconds += precheck_seconds;
    for (const auto j : plan.held) {
      r.images.push_back(load::ImageOutcome{&stand_ins[j], plan::Action::skip, {}, ""});
    }
  }
  report.blobs_hashed = loaded.blobs_hashed;
  report.bytes_hashed = loaded.bytes_hashed;
  report.via = loaded.via;
}

// Loads what was saved into the needy nodes and fills in their reports; remembers
// which config each containerd-store index stands for (kind issue 4236). Error: as
// load::load (nothing was then sent).
Result<void> load_needy(SavedWanted& saved, const load::SavePlan& plan, const std::vector<load::NodeCheck>& checks,
                        const TargetOptions& options, PreparedTargets& prepared, const std::vector<format::Image>& stand_ins,
                        load::Observer& observer, load::LoadReport& report, Console& console) {
  std::vector<load::Target> needy;
  for (const auto i : plan.needy) {
    needy.push_back(prepared.targets[i]);
    needy.back().probed = checks[i].probe;  // the load's first round trip, done already
  }
  // The loader plans each needy node from its pre-check; what it is not given, they hold.
  auto& set = saved.saved.set;
  if (prepared.via) {
    if (auto routed = route_via(*prepared.via, set, saved.images, console); !routed) {
      return std::unexpected(routed.error());
    }
  }
  auto loaded =
      load::load(set, saved.images, needy, load_options(options, prepared.cache.get(), prepared.via.get()), observer);
  if (!loaded) {
    return std::unexpected(loaded.error());
  }
  merge_loaded(report, *loaded, plan, stand_ins);
  if (prepared.cache && !options.dry_run) {
    std::vector<std::string> ok_nodes;
    for (std::size_t k = 0; k < needy.size(); ++k) {
      if (loaded->nodes[k].status == load::NodeStatus::ok) {
        ok_nodes.push_back(needy[k].uri.text);
      }
    }
    load::remember_index_configs(*prepared.cache, set, saved.images, saved.wanted, ok_nodes);
  }
  return {};
}

std::vector<util::Digest> ids_of(const std::vector<source::DockerImage>& inspected) {
  std::vector<util::Digest> ids;
  for (const auto& i : inspected) {
    ids.push_back(i.id);
  }
  return ids;
}

// Holds the console at a verbosity while it lives.
class VerbosityFor {
public:
  VerbosityFor(Console& console, Verbosity verbosity) : console_(console), before_(console.verbosity()) {
    console_.set_verbosity(verbosity);
  }
  ~VerbosityFor() { console_.set_verbosity(before_); }
  VerbosityFor(const VerbosityFor&) = delete;
  VerbosityFor& operator=(const VerbosityFor&) = delete;

private:
  Console& console_;
  Verbosity before_;
};

// One load of the images Docker described in `inspected`: pre-check, save what some
// node lacks, load it, print. A --watch reload (`lead` not empty) prints one line
// besides errors: `lead` and the summary. Error: as the passes.
Result<int> load_from_docker(const DockerImageOptions& options, const std::vector<source::DockerImage>& inspected,
                             PreparedTargets& prepared, Console& console, const std::string& lead = "") {
  std::optional<VerbosityFor> quiet;
  if (!lead.empty() && console.verbosity() == Verbosity::normal) {
    quiet.emplace(console, Verbosity::quiet);
  }
  const auto start = Clock::now();
  const auto& t = options.target;
  auto wanted = load::wanted_images(inspected, t.platform);
  if (!wanted) {
    return std::unexpected(wanted.error());
  }
  const auto& targets = prepared.targets;
  std::vector<load::NodeCheck> checks(targets.size());
  util::parallel_for(checks.size(), t.jobs, [&](std::size_t i) {
    checks[i] = load::precheck_node(targets[i], *wanted, prepared.cache.get(), t.wire);
  });
  std::vector<format::Image> stand_ins;
  for (const auto& w : *wanted) {
    stand_ins.push_back(stand_in(w));
  }
  auto console_observer = make_console_observer(console);
  auto& observer = t.observer != nullptr ? *t.observer : *console_observer;
  auto report = settled_report(targets, checks, stand_ins, observer);
  const auto plan = load::plan_save(*wanted, checks);
  std::optional<SavedWanted> saved;  // the reports point into it
  std::vector<ImageWarning> lint;
  if (!plan.nothing_to_save()) {
    auto s = save_wanted(*wanted, plan, t, targets.size(), console);
    if (!s) {
      return std::unexpected(s.error());
    }
    saved.emplace(std::move(*s));
    lint = lint_images(saved->images, t.lint, console);
    if (auto r = load_needy(*saved, plan, checks, t, prepared, stand_ins, observer, report, console); !r) {
      return std::unexpected(r.error());
    }
  }
  if (prepared.via && !report.via) {
    report.via = load::ViaReport{prepared.via->via.pull_address, false, {}};  // every node held every image
  }
  report.seconds = seconds_since(start);
  quiet.reset();
  return print_load_report(
      report, LoadSummary{wanted->size(), t.dry_run, t.json, !plan.nothing_to_save(), std::move(lint), lead}, console);
}

// Calls `line` with each line `fd` gives, until it ends or `line` fails.
Result<void> each_line(int fd, const std::function<Result<void>(const std::string&)>& line) {
  std::string pending;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return {};
    }
    pending.append(buf, static_cast<std::size_t>(n));
    for (auto end = pending.find('\n'); end != std::string::npos; end = pending.find('\n')) {
      if (auto r = line(pending.substr(0, end)); !r) {
        return r;
      }
      pending.erase(0, end + 1);
    }
  }
}

// --watch: follows the engine's image events (`docker events`) until the user ends it
// (Ctrl-C) or Docker does. After each event, one `docker image inspect` of the refs:
// when an ID changed (a rebuild, a pull, a tag moved), loads what it described. A load that fails
// is reported, and watching goes on.
Result<int> watch_docker(const DockerImageOptions& options, const std::vector<std::string>& refs,
                         PreparedTargets& prepared, util::ProcessRunner& runner, Console& console,
                         std::vector<util::Digest> ids, std::time_t since) {
  console.line(fmt::format("watching Docker for new builds of {} (Ctrl-C ends)", util::joined(refs)));
  const auto on_event = [&](const std::string&) -> Result<void> {
    auto now = source::inspect_images(refs, runner);
    if (!now) {
      return {};  // an image untagged mid-build, say: the next event tells more
    }
    auto now_ids = ids_of(*now);
    if (now_ids == ids) {
      return {};
    }
    std::vector<std::string> changed;
    for (std::size_t i = 0; i < refs.size() && i < now_ids.size(); ++i) {
      if (i >= ids.size() || now_ids[i] != ids[i]) {
        changed.push_back(fmt::format("{} is now {}", refs[i], now_ids[i].str()));
      }
    }
    ids = std::move(now_ids);  // loaded or failed, not again until it changes again
    const std::time_t now_time = std::time(nullptr);
    std::tm local{};
    ::localtime_r(&now_time, &local);
    char clock[16];
    std::strftime(clock, sizeof clock, "%H:%M:%S", &local);
    const auto lead = fmt::format("{} {}: ", clock, util::joined(changed, ", "));
    if (auto r = load_from_docker(options, *now, prepared, console, lead); !r) {
      console.error("kload: error: " + r.error().message);
    }
    return {};
  };
  // --since: the events of a build that ended between the first inspect and now are
  // replayed, so none is missed.
  auto events = runner.stream({"docker", "events", "--since", std::to_string(since), "--filter", "type=image",
                               "--format", "{{.Action}} {{.Actor.Attributes.name}}"},
                              [&](int fd) { return each_line(fd, on_event); }, std::chrono::milliseconds{0});
  if (!events) {
    return std::unexpected(events.error());
  }
  return util::fail(util::ErrorKind::node, fmt::format("docker events ended ({}); watching stopped",
                                                       events->err.empty() ? "exit status " +
                                                                                 std::to_string(events->exit_code)
                                                                           : util::trim(events->err)));
}

} // namespace

Result<int> docker_image(const DockerImageOptions& options, Console& console) {
  util::SystemProcessRunner runner;
  const auto& t = options.target;
  if (options.watch && (t.json || t.dry_run)) {
    return util::fail(util::ErrorKind::usage, "--watch loads again and again: it goes with neither --json nor --dry-run");
  }
  auto prepared = prepare_targets(t, runner, console);
  if (!prepared) {
    return std::unexpected(prepared.error());
  }
  auto refs = load::docker_refs(options.images);
  if (!refs) {
    return std::unexpected(refs.error());
  }
  const std::time_t since = std::time(nullptr);
  auto inspected = source::inspect_images(*refs, runner);
  if (!inspected) {
    return std::unexpected(inspected.error());
  }
  auto first = load_from_docker(options, *inspected, *prepared, console);
  if (!first || !options.watch) {
    return first;
  }
  return watch_docker(options, *refs, *prepared, runner, console, ids_of(*inspected), since);
}

} // namespace kload::cli
