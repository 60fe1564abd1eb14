#include "kload/cli/images_view.h"

#include "kload/cli/json_report.h"

#include <fmt/format.h>

#include <algorithm>

namespace kload::cli {

namespace {

using load::NameState;

constexpr std::size_t id_width = 12;  // as short_hex and Docker's short IDs
constexpr std::size_t gap = 2;

std::string padded(const std::string& text, std::size_t width) {
  return text.size() >= width ? text : text + std::string(width - text.size(), ' ');
}

// The one-character mark after a target: what the cell's state is, beyond "there".
char mark(NameState state) {
  switch (state) {
  case NameState::incomplete:
    return '*';
  case NameState::different:
    return '!';
  case NameState::present:
  case NameState::missing:
  case NameState::unknown:
    break;
  }
  return ' ';
}

std::string cell_text(const load::NameRow& row, std::size_t node) {
  if (row.states[node] == NameState::unknown) {
    return "failed";
  }
  if (!row.on[node]) {
    return "-";
  }
  const char m = mark(row.states[node]);
  return row.on[node]->target.short_hex() + (m == ' ' ? "" : std::string(1, m));
}

std::size_t name_width(const std::vector<load::NameRow>& rows, std::size_t least) {
  std::size_t w = least;
  for (const auto& r : rows) {
    w = std::max(w, r.name.size());
  }
  return w;
}

std::string without_trailing_spaces(std::string line) {
  line.erase(line.find_last_not_of(' ') + 1);
  return line;
}

// What the marks that occur in `rows` mean, in one line; empty when none does.
std::string legend(const std::vector<load::NameRow>& rows) {
  const auto occurs = [&](NameState s) {
    return std::any_of(rows.begin(), rows.end(), [&](const load::NameRow& r) {
      return std::find(r.states.begin(), r.states.end(), s) != r.states.end();
    });
  };
  std::string out;
  const auto add = [&](NameState s, std::string_view text) {
    if (occurs(s)) {
      out += (out.empty() ? "" : "  ") + std::string(text);
    }
  };
  add(NameState::different, "! different: the nodes disagree on the target");
  add(NameState::incomplete, "* incomplete");
  add(NameState::missing, "- missing");
  return out;
}

// One column per node, the state of each cell as a mark after its target. Empty when
// wider than `width`.
std::string wide_table(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows,
                       std::size_t width) {
  std::vector<std::string> names;
  for (const auto& n : nodes) {
    names.push_back(n.name);
  }
  const auto headings = short_node_names(names);
  const auto first = name_width(rows, std::string_view("IMAGE").size());
  std::vector<std::size_t> columns;
  std::size_t total = first;
  for (const auto& h : headings) {
    columns.push_back(std::max(id_width + 1, h.size()));  // + 1: the mark
    total += gap + columns.back();
  }
  if (total > width) {
    return "";
  }
  const auto line = [&](const std::string& name, const std::vector<std::string>& cells) {
    std::string out = padded(name, first);
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out += std::string(gap, ' ') + padded(cells[i], columns[i]);
    }
    return without_trailing_spaces(out) + "\n";
  };
  std::string out = line("IMAGE", headings);
  for (const auto& r : rows) {
    std::vector<std::string> cells;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      cells.push_back(cell_text(r, i));
    }
    out += line(r.name, cells);
  }
  const auto meaning = legend(rows);
  return meaning.empty() ? out : out + meaning + "\n";
}

// One block per node: its name, then a line per name.
std::string node_blocks(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows) {
  const auto first = name_width(rows, 0);
  std::string out;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (!nodes[i].error.empty()) {
      out += fmt::format("{}: failed\n", nodes[i].name);
      continue;
    }
    out += fmt::format("{}:\n", nodes[i].name);
    for (const auto& r : rows) {
      out += fmt::format("  {}{}{}{}\n", padded(r.name, first), std::string(gap, ' '),
                         padded(r.on[i] ? r.on[i]->target.short_hex() : "-", id_width) + std::string(gap, ' '),
                         load::state_text(r.states[i]));
    }
  }
  return out;
}

} // namespace

std::vector<std::string> short_node_names(const std::vector<std::string>& names) {
  if (names.size() < 2) {
    return names;
  }
  const auto& first = names.front();
  std::size_t common = first.size();
  for (const auto& n : names) {
    std::size_t k = 0;
    while (k < common && k < n.size() && n[k] == first[k]) {
      ++k;
    }
    common = k;
  }
  // Back to the last '-' of the shared part, and never the whole of a name.
  const auto dash = common == 0 ? std::string::npos : first.rfind('-', common - 1);
  if (dash == std::string::npos) {
    return names;
  }
  const auto cut = dash + 1;
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (n.size() <= cut) {
      return names;
    }
    out.push_back(n.substr(cut));
  }
  return out;
}

std::string images_table(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows,
                         std::size_t width) {
  if (rows.empty()) {
    return "no images\n";
  }
  auto table = wide_table(nodes, rows, width);
  return table.empty() ? node_blocks(nodes, rows) : table;
}

std::string layers_text(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows,
                        const std::vector<std::vector<load::LayerRow>>& layers) {
  std::vector<std::string> names;
  for (const auto& n : nodes) {
    names.push_back(n.name);
  }
  const auto columns = short_node_names(names);
  std::string header = "  LAYER         SHARED";
  for (const auto& c : columns) {
    header += fmt::format("  {:<{}}", c, std::max<std::size_t>(c.size(), 3));
  }
  std::string text;
  for (std::size_t k = 0; k < rows.size() && k < layers.size(); ++k) {
    text += fmt::format("\n{}\n", rows[k].name);
    if (layers[k].empty()) {
      text += "  (no layers known: the name is on no node that answered)\n";
      continue;
    }
    text += header + "\n";
    for (const auto& l : layers[k]) {
      std::string line = fmt::format("  {}  {:>6}", l.digest.short_hex(), l.shared_by);
      for (std::size_t i = 0; i < columns.size() && i < l.held.size(); ++i) {
        const char* cell = !l.held[i] ? "?" : *l.held[i] ? "yes" : "-";
        line += fmt::format("  {:<{}}", cell, std::max<std::size_t>(columns[i].size(), 3));
      }
      text += line + "\n";
    }
  }
  return text;
}

void add_layers_json(nlohmann::json& doc, const std::vector<std::vector<load::LayerRow>>& layers) {
  auto& images = doc["images"];
  for (std::size_t k = 0; k < images.size() && k < layers.size(); ++k) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& l : layers[k]) {
      nlohmann::json held = nlohmann::json::array();
      for (const auto& h : l.held) {
        held.push_back(h ? nlohmann::json(*h) : nlohmann::json(nullptr));
      }
      out.push_back({{"digest", l.digest.str()}, {"sharedBy", l.shared_by}, {"held", held}});
    }
    images[k]["layers"] = out;
  }
}

nlohmann::json images_json(const std::vector<NodeHeading>& nodes, const std::vector<load::NameRow>& rows) {
  nlohmann::json out;
  out["schema"] = schema_ls;
  out["nodes"] = nlohmann::json::array();
  for (const auto& n : nodes) {
    out["nodes"].push_back(
        {{"node", n.name}, {"uri", n.uri}, {"ok", n.error.empty()}, {"error", node_error_json(n.error)}});
  }
  out["images"] = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json cells = nlohmann::json::array();
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      cells.push_back({{"node", nodes[i].name},
                       {"state", load::state_text(r.states[i])},
                       {"target", r.on[i] ? nlohmann::json(r.on[i]->target.str()) : nlohmann::json(nullptr)},
                       {"complete", r.on[i] && r.on[i]->complete}});
    }
    out["images"].push_back({{"name", r.name}, {"state", load::state_text(r.state)}, {"nodes", cells}});
  }
  return out;
}

} // namespace kload::cli
