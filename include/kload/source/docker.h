#pragma once
// Images from the local Docker engine: what `docker image inspect` says about them,
// and `docker save` read once, as a stream, into an ImageSet. Knows nothing of nodes.
//
// Docker has two image stores. The classic one reports the config digest as .Id,
// which is kload's image ID. The containerd image store reports the manifest or
// index digest instead (kind issue 4236), and its `docker save` index lists every
// platform of a multi-platform image while holding only the blobs of those pulled
// (kind issue 3795): the reader marks the others unavailable.

#include "kload/format/archive_reader.h"
#include "kload/format/model.h"
#include "kload/util/digest.h"
#include "kload/util/error.h"
#include "kload/util/process.h"

#include <string>
#include <string_view>
#include <vector>

namespace kload::source {

// One image as `docker image inspect` describes it.
struct DockerImage {
  std::string ref;                    // the reference asked for, as the user wrote it
  util::Digest id;                    // .Id: config digest, or manifest/index digest (containerd store)
  std::vector<std::string> repo_tags; // .RepoTags, normalised (docker.io/library/app:v1)
  std::vector<util::Digest> diff_ids; // .RootFS.Layers, bottom first
  format::Platform platform;          // .Os, .Architecture, .Variant
};

// The exact argv: docker image inspect REF...
std::vector<std::string> inspect_argv(const std::vector<std::string>& refs);

// Parses inspect's JSON array; element i describes refs[i] (Docker answers in the
// order asked). Error (bad_input): not a JSON array of that length, or an element
// without a valid Id; RepoTags that do not parse as names are skipped.
util::Result<std::vector<DockerImage>> parse_inspect(std::string_view json, const std::vector<std::string>& refs);

// Runs inspect_argv (one call for all images) through `runner` and parses it. Error
// (bad_input), one line: docker cannot be run (not installed); the daemon cannot be
// reached (Docker's line quoted); an unknown image, named ("no such image in Docker:
// app:v2"); unexpected output.
util::Result<std::vector<DockerImage>> inspect_images(const std::vector<std::string>& refs,
                                                      util::ProcessRunner& runner);

// The exact argv: docker save REF...
std::vector<std::string> save_argv(const std::vector<std::string>& refs);

// What one `docker save` gave.
struct SavedImages {
  format::ImageSet set;
  format::ReadStats stats;
};

// Runs save_argv (a SystemProcessRunner, streaming) and reads its stdout once, streamed, with format::read_archive_fd
// (entries hashed as they pass, large ones spooled); messages name the input
// "docker save REF...". The set is returned only when all of the stream was read and
// docker exited 0. Error (bad_input), one line naming the images: docker cannot be
// run; docker failed (its last stderr line quoted: an unknown image, a daemon error
// mid-stream); the stream is truncated or not an archive.
util::Result<SavedImages> save_images(const std::vector<std::string>& refs, const format::ReadLimits& limits = {});
// The same through `runner` (its streaming mode), for tests with a fake Docker.
util::Result<SavedImages> save_images(const std::vector<std::string>& refs, util::ProcessRunner& runner,
                                      const format::ReadLimits& limits = {});

} // namespace kload::source
