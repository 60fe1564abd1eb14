#pragma once
// How `kload ls` shows the names on nodes: a table for people that fits a terminal of
// a given width, and the kload.ls/v1 JSON document. Pure: rows in, text out.

#include "kload/load/node_images.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace kload::cli {

// The width the table is made to fit: a classic terminal.
inline constexpr std::size_t table_width = 80;

// A node as `ls` shows it.
struct NodeHeading {
  std::string name;   // its display name (node::NodeUri::display)
  std::string uri;    // as given
  std::string error;  // one line, when the node could not be asked
};

// Column headings for `names`: with two nodes or more, the prefix they all share up to
// a '-' is dropped (kind-control-plane, kind-worker: control-plane, worker), so the
// columns stay narrow; otherwise the names as they are.
std::vector<std::string> short_node_names(const std::vector<std::string>& names);

// The table of `rows` (load::name_rows over `nodes`, in the same order), at most
// `width` columns wide when the names allow: one column per node (short_node_names),
// each cell the first 12 hex digits of the target the node holds under the name, with
// "*" after it when the image is incomplete there and "!" when the nodes holding the
// name disagree on its target; "-" when the name is not there, "failed" when the node
// could not be asked; then one line saying what the marks shown mean. When that is
// wider than `width`, one block per node instead: the node's name, then a line per
// name with its target and its state on that node in words. Names are never cut: a
// name longer than the width allows makes a longer line. Ends with a newline; "no
// images\n" when there is no row.
std::string images_table(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows,
                         std::size_t width);

// `ls --layers`: after the table, one block per name: each layer of its image (the
// first 12 hex digits of its digest), how many of the names shown have it, and per
// node (short_node_names) "yes" where the node holds it, "-" where it does not, "?"
// where that is unknown. `layers[k]` are the layer rows of `rows[k]` (load::layer_rows).
std::string layers_text(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows,
                        const std::vector<std::vector<load::LayerRow>>& layers);

// The layers of each image of an images_json document, added to it: under each name,
// "layers": [{"digest", "sharedBy", "held": [true, false or null per node]}].
void add_layers_json(nlohmann::json& doc, const std::vector<std::vector<load::LayerRow>>& layers);

// The kload.ls/v2 document, less what write_document adds (ok, exitCode, error):
// every node (name, URI, whether it answered, its error object or null) and
// every name with its state and, per node in the order of "nodes", its state there,
// its target (null when not there) and whether it is complete.
nlohmann::json images_json(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows);

} // namespace kload::cli
