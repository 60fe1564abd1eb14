#pragma once
// `kload push --compress`: the layers of docker-archive images (stored uncompressed)
// compressed before they travel, into a private spool, with the manifest that names
// them. The config, and so the image ID, is unchanged.

#include "kload/format/model.h"
#include "kload/util/error.h"

#include <deque>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

namespace kload::registry {

enum class Compression { none, gzip, zstd };

// "none", "gzip" or "zstd"; nullopt for anything else.
std::optional<Compression> parse_compression(std::string_view text);

// For each image of `images` read from a docker archive, a copy (appended to `out`)
// whose uncompressed layers are compressed into files under `spool` (gzip: Docker's
// gzip layer type in a Docker schema-2 manifest; zstd: OCI zstd layers in an OCI
// manifest), each blob added to `set` with its digest and size, and whose manifest is
// rebuilt for them. Other images are returned as they are. A layer is read once,
// through a compressor, to its spool file: never whole in memory. Error: io (a layer
// unreadable, the spool unwritable), bad_input (a layer that does not match its digest).
util::Result<std::vector<const format::Image*>> compress_layers(format::ImageSet& set,
                                                                const std::vector<const format::Image*>& images,
                                                                Compression compression,
                                                                const std::filesystem::path& spool,
                                                                std::deque<format::Image>& out);

} // namespace kload::registry
