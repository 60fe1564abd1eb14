// The Go-style decoder: keys matched to struct fields as Go's encoding/json matches
// them, later keys decoded over earlier ones, null a no-op for structs and scalars, and
// refusals where Go refuses or where Go versions disagree.

#include "kload/format/go_json.h"

#include <gtest/gtest.h>

#include <string>

namespace kload::format::gojson {
namespace {

// The document parsed and its top level taken as a struct; fails the test otherwise.
struct Doc {
  Value root;
  Struct s;
};

Doc doc(const std::string& text) {
  auto v = parse("doc.json", text);
  EXPECT_TRUE(v.has_value()) << v.error().message;
  Doc d{v ? std::move(*v) : Value{}, {}};
  auto s = Struct::of(d.root);
  EXPECT_TRUE(s.has_value());
  return d;
}

// Struct points into root, so it is made once root has its final address.
std::optional<std::string> string_of(const std::string& text, std::string_view field) {
  auto d = doc(text);
  auto s = Struct::of(d.root);
  auto v = s->string(field);
  EXPECT_TRUE(v.has_value()) << v.error().message;
  return v ? *v : std::nullopt;
}

std::string error_of(const std::string& text, const std::function<util::Result<void>(const Struct&)>& use) {
  auto v = parse("doc.json", text);
  if (!v) {
    return v.error().message;
  }
  auto s = Struct::of(*v);
  if (!s) {
    return s.error().message;
  }
  auto r = use(*s);
  return r ? "" : r.error().message;
}

TEST(GoJson, KeysMatchFieldsAsGoFoldsThem) {
  EXPECT_TRUE(key_matches("config", "config"));
  EXPECT_TRUE(key_matches("Config", "config"));
  EXPECT_TRUE(key_matches("CONFIG", "config"));
  EXPECT_TRUE(key_matches("layer\u017F", "layers")) << "LATIN SMALL LETTER LONG S folds to s";
  EXPECT_TRUE(key_matches("\u017Fize", "size"));
  EXPECT_TRUE(key_matches("\u212Aey", "key")) << "KELVIN SIGN folds to k";
  EXPECT_FALSE(key_matches("layer", "layers"));
  EXPECT_FALSE(key_matches("layerss", "layers"));
  EXPECT_FALSE(key_matches("conf\u00EEg", "config")) << "i with circumflex is not i";
  EXPECT_FALSE(key_matches("media_type", "mediaType"));
  EXPECT_FALSE(key_matches("\u212Aey", "sey"));
  bool dependent = false;
  EXPECT_TRUE(key_matches("conf\u0131g", "config", &dependent));
  EXPECT_TRUE(dependent) << "dotless i folds to I only in Go 1.21 and later";
  EXPECT_TRUE(key_matches("conf\u0130g", "config", &dependent));
  EXPECT_TRUE(dependent);
  EXPECT_TRUE(key_matches("CONFIG", "config", &dependent));
  EXPECT_FALSE(dependent);
}

TEST(GoJson, LastMatchingKeyWinsWhateverItsCase) {
  EXPECT_EQ(string_of(R"({"digest":"a","Digest":"b"})", "digest"), "b");
  EXPECT_EQ(string_of(R"({"Digest":"b","digest":"a"})", "digest"), "a") << "an exact match has no priority";
  EXPECT_EQ(string_of(R"({"digest":"a","digest":"b"})", "digest"), "b");
  EXPECT_EQ(string_of(R"({"mediaType":"a","MEDIATYPE":"b","x":"c"})", "mediaType"), "b");
  EXPECT_EQ(string_of(R"({"dige\u017Ft":"x","digest":"a"})", "digest"), "a");
  EXPECT_EQ(string_of(R"({"digest":"a","dige\u017Ft":"x"})", "digest"), "x");
  EXPECT_EQ(string_of(R"({"other":"a"})", "digest"), std::nullopt);
}

TEST(GoJson, NullLeavesAScalarAsItWas) {
  EXPECT_EQ(string_of(R"({"digest":"a","Digest":null})", "digest"), "a");
  EXPECT_EQ(string_of(R"({"digest":null})", "digest"), std::nullopt);
}

TEST(GoJson, AStructNamedTwiceReceivesBothObjects) {
  auto d = doc(R"({"config":{"mediaType":"A","digest":"d1","size":1},"Config":{"digest":"d2"},"CONFIG":null})");
  auto s = Struct::of(d.root);
  auto config = s->object("config");
  ASSERT_TRUE(config.has_value());
  EXPECT_TRUE(config->present());
  EXPECT_EQ(*config->string("mediaType"), "A") << "kept from the first object";
  EXPECT_EQ(*config->string("digest"), "d2") << "overwritten by the second";
  EXPECT_EQ(*config->uint64("size"), 1u);
}

TEST(GoJson, StringArraysTakeTheLastAndNullResets) {
  auto d = doc(R"({"Layers":["a","b"],"layers":["c"],"Cmd":["x"],"cmd":null})");
  auto s = Struct::of(d.root);
  EXPECT_EQ(*s->strings("layers"), (std::vector<std::string>{"c"}));
  EXPECT_EQ(*s->strings("Cmd"), std::nullopt);
  EXPECT_EQ(*s->strings("absent"), std::nullopt);
}

TEST(GoJson, SliceOfStructsNamedTwiceWithElementsIsRefused) {
  const auto structs = [](const Struct& s) -> util::Result<void> {
    auto r = s.structs("layers");
    if (!r) {
      return std::unexpected(r.error());
    }
    return {};
  };
  EXPECT_EQ(error_of(R"({"layers":[{"digest":"a"}],"Layers":[{"size":1}]})", structs),
            "field \"layers\": named twice with elements both times; Go would merge the second array into the "
            "first one's elements");
  EXPECT_EQ(error_of(R"({"layers":[{"digest":"a"}],"Layers":null,"LAYERS":[{"size":1}]})", structs), "")
      << "null resets the slice";
  EXPECT_EQ(error_of(R"({"layers":[{"digest":"a"}],"Layers":[],"LAYERS":[{"size":1}]})", structs), "")
      << "[] makes a new, empty slice";
  auto d = doc(R"({"layers":[{"digest":"a"}],"Layers":[],"LAYERS":[{"size":1},null]})");
  auto s = Struct::of(d.root);
  auto layers = s->structs("layers");
  ASSERT_TRUE(layers.has_value());
  ASSERT_EQ((*layers)->size(), 2u);
  EXPECT_EQ(*(**layers)[0].string("digest"), std::nullopt);
  EXPECT_EQ(*(**layers)[0].uint64("size"), 1u);
  EXPECT_FALSE((**layers)[1].present());
}

TEST(GoJson, MapsKeepExactKeysAndMerge) {
  auto d = doc(R"({"annotations":{"a":"1","A":"2","a":"3"},"Annotations":{"b":null},"x":1})");
  auto s = Struct::of(d.root);
  auto m = s->string_map("annotations");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(*m, (std::map<std::string, std::string>{{"A", "2"}, {"a", "3"}, {"b", ""}}));
  auto cleared = doc(R"({"annotations":{"a":"1"},"ANNOTATIONS":null})");
  EXPECT_TRUE(Struct::of(cleared.root)->string_map("annotations")->empty());
}

TEST(GoJson, ValuesOfTheWrongKindAreRefused) {
  const auto field = [](auto getter) {
    return [=](const Struct& s) -> util::Result<void> {
      auto r = getter(s);
      if (!r) {
        return std::unexpected(r.error());
      }
      return {};
    };
  };
  const auto str = field([](const Struct& s) { return s.string("digest"); });
  const auto size = field([](const Struct& s) { return s.uint64("size"); });
  const auto strs = field([](const Struct& s) { return s.strings("Layers"); });
  EXPECT_EQ(error_of(R"({"digest":1})", str), "field \"digest\": expected a string");
  EXPECT_EQ(error_of(R"({"Digest":"a","digest":[]})", str), "field \"digest\": expected a string");
  EXPECT_EQ(error_of(R"({"size":-1})", size), "field \"size\": expected a non-negative integer below 2^63");
  EXPECT_EQ(error_of(R"({"size":1.0})", size), "field \"size\": expected a non-negative integer below 2^63");
  EXPECT_EQ(error_of(R"({"size":9223372036854775808})", size),
            "field \"size\": expected a non-negative integer below 2^63");
  EXPECT_EQ(error_of(R"({"size":9223372036854775807})", size), "");
  EXPECT_EQ(error_of(R"({"Layers":["a",null]})", strs), "field \"Layers\": expected an array of strings");
  EXPECT_EQ(error_of(R"({"conf\u0131g":"x"})", field([](const Struct& s) { return s.string("config"); })),
            "field \"config\": key \"conf\u0131g\" matches it only in Go 1.21 and later; refusing a document Go "
            "versions decode differently");
  EXPECT_EQ(error_of("[1]", str), "expected a JSON object");
}

TEST(GoJson, DocumentsGoRefusesAreRefused) {
  const auto error = [](const std::string& text) {
    auto v = parse("doc.json", text);
    return v ? std::string() : v.error().message;
  };
  EXPECT_EQ(error("\xEF\xBB\xBF{}"),
            "doc.json: starts with a UTF-8 byte order mark, which Go's encoding/json (and so containerd) refuses");
  EXPECT_NE(error("{} x"), "");
  EXPECT_NE(error("{\"a\":\"\xff\"}"), "") << "invalid UTF-8 (Go would substitute U+FFFD)";
  EXPECT_EQ(error(std::string(10000, '[') + std::string(10000, ']')), "");
  EXPECT_EQ(error(std::string(10001, '[') + std::string(10001, ']')), "doc.json: JSON nested more than 10000 levels deep");
  EXPECT_EQ(error(" {\"a\":[1,{\"b\":null}]}\n"), "");
}

TEST(GoJson, EveryDuplicateIsKeptInOrder) {
  auto v = parse("doc.json", R"({"a":1,"A":2,"a":{"b":[true,null,"s"]}})");
  ASSERT_TRUE(v.has_value());
  ASSERT_EQ(v->members.size(), 3u);
  EXPECT_EQ(v->members[0].key, "a");
  EXPECT_EQ(v->members[1].key, "A");
  EXPECT_EQ(v->members[1].value.integer, 2u);
  const auto& inner = v->members[2].value.members.at(0).value;
  ASSERT_EQ(inner.items.size(), 3u);
  EXPECT_TRUE(inner.items[0].boolean);
  EXPECT_TRUE(inner.items[1].is_null());
  EXPECT_EQ(inner.items[2].text, "s");
}

// Only the fields asked for are kept (and all under a map field), whatever their case;
// the rest is parsed and checked, and costs no memory.
TEST(GoJson, OnlyTheFieldsAskedForAreKept) {
  const Keep keep{{"config", "layers", "annotations"}, {"annotations"}};
  auto v = parse("doc.json",
                 R"({"history":[{"a":[1,2,{"b":"c"}]}],"Config":{"Layers":[1],"other":{"x":[]}},)"
                 R"("annotations":{"any":{"deep":["kept"]},"k":"v"},"layer\u017F":[{"x":1}]})",
                 keep);
  ASSERT_TRUE(v.has_value()) << v.error().message;
  ASSERT_EQ(v->members.size(), 3u);
  EXPECT_EQ(v->members[0].key, "Config");
  ASSERT_EQ(v->members[0].value.members.size(), 1u) << "\"other\" is not kept";
  EXPECT_EQ(v->members[0].value.members[0].key, "Layers");
  EXPECT_EQ(v->members[1].key, "annotations");
  ASSERT_EQ(v->members[1].value.members.size(), 2u) << "a map keeps every member";
  EXPECT_EQ(v->members[1].value.members[0].value.members[0].value.items[0].text, "kept");
  EXPECT_EQ(v->members[2].key, "layer\u017F");
  EXPECT_TRUE(v->members[2].value.items[0].members.empty()) << "\"x\" is not a field asked for";

  auto bad = parse("doc.json", R"({"history":[1,2,{"a":"b"},)", keep);
  EXPECT_FALSE(bad.has_value()) << "what is not kept is still checked";
  auto deep = parse("doc.json", R"({"history":)" + std::string(10001, '[') + std::string(10001, ']') + "}", keep);
  ASSERT_FALSE(deep.has_value());
  EXPECT_EQ(deep.error().message, "doc.json: JSON nested more than 10000 levels deep");
}

TEST(GoJson, KeptValuesAreBounded) {
  const Keep keep{{"layers"}, {}, 5};
  EXPECT_TRUE(parse("doc.json", R"({"layers":[1,2,3],"history":[1,2,3,4,5,6,7,8]})", keep).has_value());
  auto r = parse("doc.json", R"({"layers":[1,2,3,4,5]})", keep);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "doc.json: more than 5 JSON values in the fields kload reads");
}

} // namespace
} // namespace kload::format::gojson
