#include "kload/cache/cache.h"
#include "kload/util/process.h"
#include "kload/util/sha256.h"

#include "support/test_support.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace kload::cache {
namespace {

using util::Digest;
using testing::Scratch;

Digest d(const std::string& s) { return util::Sha256::of(s); }

NodeRecord sample() {
  NodeRecord r;
  r.server_uuid = "f5e9167c-4c4c-4e94-93fa-30a69f704872";
  r.listed_at = 1700000000;
  r.blobs = {d("a"), d("b"), d("c")};
  r.names["docker.io/library/app:v1"] = NameRecord{d("m"), {d("id")}, true, true, 1700000001};
  r.target_ids[d("m")] = {d("id")};
  r.target_blobs[d("m")] = {d("m"), d("id"), d("a")};
  return r;
}

std::unique_ptr<Cache> open_ok(const std::filesystem::path& dir, std::vector<std::string>* warnings = nullptr) {
  auto c = Cache::open(dir, [&](const std::string& w) {
    if (warnings != nullptr) {
      warnings->push_back(w);
    }
  });
  EXPECT_TRUE(c.has_value()) << c.error().message;
  return c ? std::move(*c) : nullptr;
}

TEST(CacheRecord, EncodeDecodeRoundTrips) {
  const auto r = sample();
  auto back = decode_node(encode_node(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->server_uuid, r.server_uuid);
  EXPECT_EQ(back->listed_at, r.listed_at);
  EXPECT_EQ(back->blobs, r.blobs);
  ASSERT_EQ(back->names.size(), 1u);
  const auto& n = back->names.at("docker.io/library/app:v1");
  EXPECT_EQ(n.target, d("m"));
  EXPECT_EQ(n.ids, std::vector<Digest>{d("id")});
  EXPECT_TRUE(n.complete);
  EXPECT_TRUE(n.by_kload);
  EXPECT_EQ(back->target_blobs, r.target_blobs);
}

TEST(CacheRecord, SendingMarksRoundTripAndTellAnInterruptedLoad) {
  auto r = sample();
  EXPECT_FALSE(r.interrupted_load());
  r.sending = {util::own_process_token()};
  auto back = decode_node(encode_node(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->sending, r.sending);
  EXPECT_FALSE(back->interrupted_load()) << "this process is still running";

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    _exit(0);
  }
  const auto dead = util::process_token(pid);  // may be empty if it was quick
  int status = 0;
  waitpid(pid, &status, 0);
  r.sending.push_back(dead.empty() ? std::to_string(pid) + ".1" : dead);
  EXPECT_TRUE(decode_node(encode_node(r))->interrupted_load());
}

TEST(CacheRecord, DecodeRejectsGarbageAndTruncation) {
  EXPECT_FALSE(decode_node("").has_value());
  EXPECT_FALSE(decode_node("not a record at all").has_value());
  auto bytes = encode_node(sample());
  EXPECT_FALSE(decode_node(bytes.substr(0, bytes.size() - 5)).has_value());
  bytes[10] = '{';
  EXPECT_FALSE(decode_node(bytes.substr(0, 20)).has_value());
}

TEST(CacheRecord, ForgetUnreferencedDropsOnlyBlobsNoNamedImageNeeds) {
  NodeRecord r;
  r.blobs = {d("base"), d("old-top"), d("new-top"), d("m-old"), d("m-new"), d("listed-only")};
  r.target_blobs[d("m-old")] = {d("m-old"), d("base"), d("old-top")};
  r.target_blobs[d("m-new")] = {d("m-new"), d("base"), d("new-top")};
  r.names["app"] = NameRecord{d("m-new"), {}, true, true, 0};
  r.forget_unreferenced();
  EXPECT_TRUE(r.blobs.contains(d("base"))) << "still needed by the named image";
  EXPECT_TRUE(r.blobs.contains(d("new-top")));
  EXPECT_FALSE(r.blobs.contains(d("old-top")));
  EXPECT_FALSE(r.blobs.contains(d("m-old")));
  EXPECT_TRUE(r.blobs.contains(d("listed-only"))) << "blobs of unknown provenance stay";
  EXPECT_FALSE(r.target_blobs.contains(d("m-old")));
}

TEST(Cache, PutGetForgetAndList) {
  Scratch s;
  auto c = open_ok(s / "cache");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->node("containerd:///x/sock").value().has_value());
  ASSERT_TRUE(c->put_node("containerd:///x/sock", sample()).has_value());
  auto got = c->node("containerd:///x/sock");
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->blobs.size(), 3u);
  auto all = c->nodes();
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].first, "containerd:///x/sock");
  EXPECT_TRUE(c->forget_node("containerd:///x/sock").value());
  EXPECT_FALSE(c->forget_node("containerd:///x/sock").value());
  EXPECT_FALSE(c->node("containerd:///x/sock").value().has_value());
}

TEST(Cache, DirectoryIsPrivate) {
  Scratch s;
  auto c = open_ok(s / "cache");
  struct stat st{};
  ASSERT_EQ(::stat((s / "cache").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((s / "cache" / "data.mdb").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);
}

TEST(Cache, ConcurrentProcessesNeverLoseUpdates) {
  Scratch s;
  const auto dir = s / "cache";
  { open_ok(dir); }
  constexpr int processes = 4;
  constexpr int updates = 40;
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto c = Cache::open(dir, {});
      if (!c) {
        _exit(3);
      }
      for (int i = 0; i < updates; ++i) {
        auto r = (*c)->update_node("node", [&](NodeRecord& rec) {
          rec.blobs.insert(d(std::to_string(p) + "/" + std::to_string(i)));
        });
        if (!r) {
          _exit(4);
        }
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (const auto pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  auto c = open_ok(dir);
  auto rec = c->node("node");
  ASSERT_TRUE(rec && *rec);
  EXPECT_EQ((*rec)->blobs.size(), static_cast<std::size_t>(processes * updates));
}

TEST(Cache, ThreadsShareOneCache) {
  Scratch s;
  auto c = open_ok(s / "cache");
  std::vector<std::jthread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        (void)c->update_node("n", [&](NodeRecord& r) { r.blobs.insert(d(std::to_string(t * 100 + i))); });
      }
    });
  }
  threads.clear();
  EXPECT_EQ(c->node("n").value()->blobs.size(), 100u);
}

TEST(Cache, GarbageDataFileIsMovedAsideAndRebuilt) {
  Scratch s;
  const auto dir = s / "cache";
  std::filesystem::create_directories(dir);
  testing::write_file(dir / "data.mdb", std::string(100000, 'x'));
  std::vector<std::string> warnings;
  auto c = open_ok(dir, &warnings);
  ASSERT_TRUE(c);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("damaged"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("moved it to"), std::string::npos) << warnings[0];
  ASSERT_TRUE(c->put_node("n", sample()).has_value());
  EXPECT_TRUE(c->node("n").value().has_value());
  bool aside = false;
  for (const auto& e : std::filesystem::directory_iterator(s.path())) {
    aside |= e.path().filename().string().starts_with("cache.corrupt-");
  }
  EXPECT_TRUE(aside);
}

TEST(Cache, TruncatedDataFileIsMovedAsideNotMapped) {
  Scratch s;
  const auto dir = s / "cache";
  {
    auto c = open_ok(dir);
    for (int i = 0; i < 200; ++i) {
      auto r = sample();
      for (int b = 0; b < 200; ++b) {
        r.blobs.insert(d(std::to_string(i * 1000 + b)));
      }
      ASSERT_TRUE(c->put_node("node" + std::to_string(i), r).has_value());
    }
  }
  const auto size = std::filesystem::file_size(dir / "data.mdb");
  ASSERT_GT(size, 64u * 1024u);
  std::filesystem::resize_file(dir / "data.mdb", size / 3);
  std::vector<std::string> warnings;
  auto c = open_ok(dir, &warnings);
  ASSERT_TRUE(c);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("truncated"), std::string::npos) << warnings[0];
  EXPECT_TRUE(c->nodes().value().empty());
}

TEST(Cache, VerifiedDigestsFollowTheFileVersion) {
  Scratch s;
  auto c = open_ok(s / "cache");
  const auto file = s / "in.tar";
  testing::write_file(file, "one");
  auto key = InputKey::of(file.string());
  ASSERT_TRUE(key.has_value());
  ASSERT_TRUE(c->add_verified(*key, {d("x"), d("y")}).has_value());
  ASSERT_TRUE(c->add_verified(*key, {d("y"), d("z")}).has_value());
  EXPECT_EQ(c->verified(*key).value().size(), 3u);
  // A rewritten file is another version: nothing it held is trusted.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  testing::write_file(file, "two");
  auto key2 = InputKey::of(file.string());
  ASSERT_TRUE(key2.has_value());
  EXPECT_TRUE(c->verified(*key2).value().empty());
  EXPECT_FALSE(InputKey::of("-").has_value());
  EXPECT_FALSE(InputKey::of(s.path().string()).has_value());
  EXPECT_EQ(c->forget_inputs().value(), 1u);
}

} // namespace
} // namespace kload::cache
