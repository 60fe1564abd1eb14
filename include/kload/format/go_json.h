#pragma once
// JSON documents read the way containerd reads them: Go's encoding/json decoding into
// a struct. kload must see the same image containerd will store, so it cannot read
// exact keys of a parsed tree: Go matches an object key to a struct field
// case-insensitively (ASCII case, and U+017F 'ſ' for s, U+212A KELVIN SIGN for k), a
// later key decodes over an earlier one that matched the same field, null leaves a
// struct or scalar field as it was, and a map field keeps exact keys. A document is
// parsed once into a tree that keeps every member of every object in document order,
// duplicates included; `Struct` then answers field by field as Go would, and refuses
// what Go would refuse or what different Go versions decode differently.
//
// Stricter than Go on purpose: invalid UTF-8 and lone surrogate escapes are refused
// (Go replaces them with U+FFFD), as is a document whose top level is not the
// expected kind.

#include "kload/util/error.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kload::format::gojson {

// Go's encoding/json refuses documents nested deeper than this.
inline constexpr int max_depth = 10000;

// One JSON value. Objects keep every member in document order, duplicates included.
struct Member;

struct Value {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  std::string text;                      // a string's contents
  std::optional<std::uint64_t> integer;  // a number written as a non-negative integer that fits
  std::vector<Value> items;                              // an array's elements
  std::vector<Member> members;                           // an object's members, in order

  [[nodiscard]] bool is_null() const { return kind == Kind::null; }
  [[nodiscard]] bool is_object() const { return kind == Kind::object; }
  [[nodiscard]] bool is_array() const { return kind == Kind::array; }
  [[nodiscard]] bool is_string() const { return kind == Kind::string; }
};

// One member of an object: a pair would need Value complete where it is declared.
struct Member {
  std::string key;
  Value value;
};

// What parse keeps of a document. Every member is parsed and checked, but only those
// whose key matches one of `fields` as a struct field (see key_matches), and all that
// lies under a member matching one of `maps`, are kept: memory then grows with what
// the caller reads (a config's history of millions of values costs nothing), and at
// most `max_values` values are kept. Empty `fields`: everything is kept.
struct Keep {
  std::vector<std::string_view> fields;
  std::vector<std::string_view> maps;
  std::size_t max_values = std::size_t{1} << 20;
};

// Parses one document. Error (bad_input, "NAME: ..."): a UTF-8 byte order mark (Go
// refuses it), invalid JSON or UTF-8, trailing data, nesting deeper than max_depth,
// more than keep.max_values values kept.
util::Result<Value> parse(std::string_view name, std::string_view text, const Keep& keep = {});

// True when Go decodes the key `key` into a struct field named `field` (ASCII), by
// exact match or case folding. `version_dependent` is set when the match relies on
// U+0130 or U+0131, which Go 1.21 and later fold to I and earlier versions do not.
bool key_matches(std::string_view key, std::string_view field, bool* version_dependent = nullptr);

// A Go struct being decoded: every JSON object decoded into it, in order (a struct
// field named twice, "config" and "Config" say, receives both objects, the later one
// overwriting only the fields it names). Holds pointers into the Value it was made
// from, which must outlive it. Errors are bad_input with a message naming the field,
// for the caller to prefix with the document's name.
class Struct {
public:
  Struct() = default;
  // `v` decoded into a struct: an object, or null (nothing decoded). Error: any other kind.
  static util::Result<Struct> of(const Value& v);
  // The elements of a top-level array of structs. Error: not an array, or an element
  // neither object nor null.
  static util::Result<std::vector<Struct>> elements(const Value& v);

  // True when at least one object was decoded into it.
  [[nodiscard]] bool present() const { return !objects_.empty(); }

  // True when some key matches `field`, whatever its value (null included), as
  // containerd's media type check sees it. Error: as string.
  [[nodiscard]] util::Result<bool> has(std::string_view field) const;
  // A string field: the last non-null value. nullopt when absent or only null.
  // Error: a value of another kind; a key matching only under some Go versions.
  [[nodiscard]] util::Result<std::optional<std::string>> string(std::string_view field) const;
  // An integer field (a size): the last non-null value. Error: not a non-negative
  // integer below 2^63.
  [[nodiscard]] util::Result<std::optional<std::uint64_t>> uint64(std::string_view field) const;
  // A struct field: every object decoded into it. Error: a value neither object nor null.
  [[nodiscard]] util::Result<Struct> object(std::string_view field) const;
  // A []string field: the last array (null resets it to nil, so nullopt).
  // Error: a value neither array nor null, an element not a string (Go keeps the old
  // element for a null one, which kload does not model).
  [[nodiscard]] util::Result<std::optional<std::vector<std::string>>> strings(std::string_view field) const;
  // A slice-of-structs field (layers, manifests): the last array's elements. Error, on
  // top of strings' errors: two non-empty arrays with no null or [] between them, as Go
  // then decodes the second into the first one's elements, merging them in a way that
  // depends on its allocator.
  [[nodiscard]] util::Result<std::optional<std::vector<Struct>>> structs(std::string_view field) const;
  // A map[string]string field (annotations, labels): exact keys, the last duplicate
  // winning; objects decoded into the same field merge, null clears; a null value is "".
  // Error: a value neither object nor null, or a member value neither string nor null.
  [[nodiscard]] util::Result<std::map<std::string, std::string>> string_map(std::string_view field) const;

private:
  util::Result<std::vector<const Value*>> matches(std::string_view field) const;

  std::vector<const Value*> objects_;
};

} // namespace kload::format::gojson
