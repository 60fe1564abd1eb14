#include "kload/format/go_json.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <limits>

namespace kload::format::gojson {

using util::ErrorKind;
using util::Result;

namespace {

// Builds the tree through nlohmann's SAX interface, which reports every key in order,
// duplicates included (its DOM keeps only one of them). Members `keep` does not ask
// for are parsed but not stored: `skip_` counts the open containers of such a value.
class TreeBuilder : public nlohmann::json_sax<nlohmann::json> {
public:
  TreeBuilder(Value& root, const Keep& keep) : root_(root), keep_(keep) {}

  bool null() override { return put(Value{}); }
  bool boolean(bool b) override {
    Value v;
    v.kind = Value::Kind::boolean;
    v.boolean = b;
    return put(std::move(v));
  }
  bool number_integer(number_integer_t) override { return put(number(std::nullopt)); }
  bool number_unsigned(number_unsigned_t n) override { return put(number(n)); }
  bool number_float(number_float_t, const string_t&) override { return put(number(std::nullopt)); }
  bool string(string_t& s) override {
    if (skipping()) {
      return put(Value{});
    }
    Value v;
    v.kind = Value::Kind::string;
    v.text = std::move(s);
    return put(std::move(v));
  }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return open(Value::Kind::object); }
  bool key(string_t& k) override {
    if (skip_ > 0) {
      return true;
    }
    const Open& parent = stack_.back();
    skip_next_ = !parent.keep_all && !any_matches(keep_.fields, k);
    map_next_ = !parent.keep_all && !skip_next_ && any_matches(keep_.maps, k);
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(Value::Kind::array); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = fmt::format("invalid JSON at byte {}: {}", position, e.what());
    return false;
  }

  [[nodiscard]] const std::string& error() const { return error_; }

private:
  struct Open {
    Value* value;
    bool keep_all; // a map field: every member is kept
  };

  static bool any_matches(const std::vector<std::string_view>& names, std::string_view key) {
    for (const auto name : names) {
      if (key_matches(key, name)) {
        return true;
      }
    }
    return false;
  }

  [[nodiscard]] bool skipping() const { return skip_ > 0 || skip_next_; }

  static Value number(std::optional<std::uint64_t> n) {
    Value v;
    v.kind = Value::Kind::number;
    v.integer = n;
    return v;
  }

  // Places `v` where the parser is: the root, an array's next element, or the member
  // named by the last key. Returns the placed value, or nullptr when it is not kept.
  Value* place(Value v) {
    map_next_ = false;
    if (skip_ > 0) {
      return nullptr;
    }
    if (skip_next_) {
      skip_next_ = false;
      return nullptr;
    }
    if (++kept_ > keep_.max_values) {
      error_ = fmt::format("more than {} JSON values in the fields kload reads", keep_.max_values);
      return nullptr;
    }
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Value* parent = stack_.back().value;
    if (parent->kind == Value::Kind::array) {
      parent->items.push_back(std::move(v));
      return &parent->items.back();
    }
    parent->members.push_back(Member{std::move(key_), std::move(v)});
    return &parent->members.back().value;
  }

  bool put(Value v) {
    place(std::move(v));
    return error_.empty();
  }

  // Only the innermost open container grows, so the pointers to its ancestors, held
  // in stack_, stay valid.
  bool open(Value::Kind kind) {
    if (++depth_ > max_depth) {
      error_ = fmt::format("JSON nested more than {} levels deep", max_depth);
      return false;
    }
    const bool keep_all = keep_.fields.empty() || map_next_ || (!stack_.empty() && stack_.back().keep_all);
    map_next_ = false;
    if (skip_ > 0 || skip_next_) {
      skip_next_ = false;
      ++skip_;
      return true;
    }
    Value v;
    v.kind = kind;
    Value* placed = place(std::move(v));
    if (placed == nullptr) {
      return false;
    }
    stack_.push_back(Open{placed, keep_all});
    return true;
  }

  bool close() {
    --depth_;
    if (skip_ > 0) {
      --skip_;
    } else {
      stack_.pop_back();
    }
    return true;
  }

  Value& root_;
  const Keep& keep_;
  std::vector<Open> stack_;
  std::string key_;
  std::string error_;
  int depth_ = 0;
  std::size_t skip_ = 0;
  bool skip_next_ = false;
  bool map_next_ = false;
  std::size_t kept_ = 0;
};

Result<void> field_error(std::string_view field, std::string_view what) {
  return util::fail(ErrorKind::bad_input, fmt::format("field \"{}\": {}", field, what));
}

// The code point starting at s[i] (valid UTF-8, as the parser checked), advancing i.
char32_t next_rune(std::string_view s, std::size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  int len = 1;
  char32_t r = c;
  if (c >= 0xF0) {
    len = 4;
    r = c & 0x07;
  } else if (c >= 0xE0) {
    len = 3;
    r = c & 0x0F;
  } else if (c >= 0xC0) {
    len = 2;
    r = c & 0x1F;
  }
  for (int k = 1; k < len && i + static_cast<std::size_t>(k) < s.size(); ++k) {
    r = (r << 6) | (static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0x3F);
  }
  i += static_cast<std::size_t>(len);
  return r;
}

char ascii_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

} // namespace

Result<Value> parse(std::string_view name, std::string_view text, const Keep& keep) {
  if (text.starts_with("\xEF\xBB\xBF")) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: starts with a UTF-8 byte order mark, which Go's encoding/json (and so "
                                  "containerd) refuses",
                                  name));
  }
  Value root;
  TreeBuilder builder(root, keep);
  const bool ok = nlohmann::json::sax_parse(text, &builder, nlohmann::json::input_format_t::json, true);
  if (!ok) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: {}", name, builder.error().empty() ? "invalid JSON" : builder.error()));
  }
  return root;
}

bool key_matches(std::string_view key, std::string_view field, bool* version_dependent) {
  if (version_dependent != nullptr) {
    *version_dependent = false;
  }
  std::size_t i = 0;
  std::size_t j = 0;
  bool dependent = false;
  while (i < key.size()) {
    if (j >= field.size()) {
      return false;
    }
    const char want = ascii_upper(field[j++]);
    const auto c = static_cast<unsigned char>(key[i]);
    if (c < 0x80) {
      if (ascii_upper(key[i++]) != want) {
        return false;
      }
      continue;
    }
    // Go's folding maps a non-ASCII rune to an ASCII letter only for these four.
    switch (next_rune(key, i)) {
    case U'\u017F': // LATIN SMALL LETTER LONG S
      if (want != 'S') {
        return false;
      }
      break;
    case U'\u212A': // KELVIN SIGN
      if (want != 'K') {
        return false;
      }
      break;
    case U'\u0130': // LATIN CAPITAL LETTER I WITH DOT ABOVE
    case U'\u0131': // LATIN SMALL LETTER DOTLESS I
      if (want != 'I') {
        return false;
      }
      dependent = true;
      break;
    default:
      return false;
    }
  }
  if (j != field.size()) {
    return false;
  }
  if (version_dependent != nullptr) {
    *version_dependent = dependent;
  }
  return true;
}

Result<Struct> Struct::of(const Value& v) {
  Struct s;
  if (v.is_object()) {
    s.objects_.push_back(&v);
  } else if (!v.is_null()) {
    return util::fail(ErrorKind::bad_input, "expected a JSON object");
  }
  return s;
}

Result<std::vector<Struct>> Struct::elements(const Value& v) {
  if (!v.is_array()) {
    return util::fail(ErrorKind::bad_input, "expected a JSON array");
  }
  std::vector<Struct> out;
  out.reserve(v.items.size());
  for (const auto& item : v.items) {
    auto s = of(item);
    if (!s) {
      return util::fail(ErrorKind::bad_input, fmt::format("element {}: {}", out.size(), s.error().message));
    }
    out.push_back(std::move(*s));
  }
  return out;
}

Result<std::vector<const Value*>> Struct::matches(std::string_view field) const {
  std::vector<const Value*> out;
  for (const Value* object : objects_) {
    for (const auto& [key, value] : object->members) {
      bool dependent = false;
      if (!key_matches(key, field, &dependent)) {
        continue;
      }
      if (dependent) {
        return std::unexpected(field_error(field, fmt::format("key \"{}\" matches it only in Go 1.21 and later; "
                                                              "refusing a document Go versions decode differently",
                                                              key))
                                   .error());
      }
      out.push_back(&value);
    }
  }
  return out;
}

Result<bool> Struct::has(std::string_view field) const {
  auto m = matches(field);
  if (!m) {
    return std::unexpected(m.error());
  }
  return !m->empty();
}

Result<std::optional<std::string>> Struct::string(std::string_view field) const {
  auto m = matches(field);
  if (!m) {
    return std::unexpected(m.error());
  }
  std::optional<std::string> out;
  for (const Value* v : *m) {
    if (v->is_string()) {
      out = v->text;
    } else if (!v->is_null()) {
      return std::unexpected(field_error(field, "expected a string").error());
    }
  }
  return out;
}

Result<std::optional<std::uint64_t>> Struct::uint64(std::string_view field) const {
  auto m = matches(field);
  if (!m) {
    return std::unexpected(m.error());
  }
  std::optional<std::uint64_t> out;
  for (const Value* v : *m) {
    if (v->is_null()) {
      continue;
    }
    if (v->kind != Value::Kind::number || !v->integer ||
        *v->integer > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::unexpected(field_error(field, "expected a non-negative integer below 2^63").error());
    }
    out = v->integer;
  }
  return out;
}

Result<Struct> Struct::object(std::string_view field) const {
  auto m = matches(field);
  if (!m) {
    return std::unexpected(m.error());
  }
  Struct out;
  for (const Value* v : *m) {
    if (v->is_object()) {
      out.objects_.push_back(v);
    } else if (!v->is_null()) {
      return std::unexpected(field_error(field, "expected a JSON object").error());
    }
  }
  return out;
}

Result<std::optional<std::vector<std::string>>> Struct::strings(std::string_view field) const {
  auto m = matches(field);
  if (!m) {
    return std::unexpected(m.error());
  }
  std::optional<std::vector<std::string>> out;
  for (const Value* v : *m) {
    if (v->is_null()) {
      out.reset();
      continue;
    }
    if (!v->is_array()) {
      return std::unexpected(field_error(field, "expected an array of strings").error());
    }
    std::vector<std::string> items;
    for (const auto& item : v->items) {
      if (!item.is_string()) {
        return std::unexpected(field_error(field, "expected an array of strings").error());
      }
      items.push_back(item.text);
    }
    out = std::move(items);
  }
  return out;
}

Result<std::optional<std::vector<Struct>>> Struct::structs(std::string_view field) const {
  auto m = matches(field);
  if (!m) {
    return std::unexpected(m.error());
  }
  std::optional<std::vector<Struct>> out;
  bool reusable = false; // the slice holds elements a later array would decode into
  for (const Value* v : *m) {
    if (v->is_null()) {
      out.reset();
      reusable = false;
      continue;
    }
    auto elements = Struct::elements(*v);
    if (!elements) {
      return std::unexpected(field_error(field, elements.error().message).error());
    }
    if (reusable && !elements->empty()) {
      return std::unexpected(
          field_error(field, "named twice with elements both times; Go would merge the second array into the "
                             "first one's elements")
              .error());
    }
    reusable = !elements->empty();
    out = std::move(*elements);
  }
  return out;
}

Result<std::map<std::string, std::string>> Struct::string_map(std::string_view field) const {
  auto m = matches(field);
  if (!m) {
    return std::unexpected(m.error());
  }
  std::map<std::string, std::string> out;
  for (const Value* v : *m) {
    if (v->is_null()) {
      out.clear();
      continue;
    }
    if (!v->is_object()) {
      return std::unexpected(field_error(field, "expected a JSON object").error());
    }
    for (const auto& [key, value] : v->members) {
      if (value.is_string()) {
        out[key] = value.text;
      } else if (value.is_null()) {
        out[key] = "";
      } else {
        return std::unexpected(field_error(field, fmt::format("\"{}\" is not a string", key)).error());
      }
    }
  }
  return out;
}

} // namespace kload::format::gojson
