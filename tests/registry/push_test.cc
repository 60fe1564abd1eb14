// registry::push over a fake registry (an HttpClient that records every request):
// the Bearer token flow and the order of what is sent, without a socket.

#include "kload/format/archive_reader.h"
#include "kload/registry/push.h"
#include "kload/util/sha256.h"
#include "support/test_support.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <mutex>

namespace kload::registry {
namespace {

struct Sent {
  std::string method;
  std::string url;
  std::string authorization;
  std::string user;
  std::string body;
  std::string content_type;
};

// A registry that wants a Bearer token from https://auth.test/token (granted to
// ci:pw), holds the blobs in `present` and answers manifests with `tag_digest`.
class FakeRegistry final : public HttpClient {
public:
  std::vector<std::string> present;
  std::string tag_digest;
  std::vector<Sent> sent;
  long put_blob_status = 201;           // the answer to a blob's closing PUT
  std::string put_blob_body;
  std::function<void()> on_first_post;  // runs when the first upload starts

  util::Result<HttpResponse> send(const HttpRequest& r) override {
    std::lock_guard lock(mutex_);
    Sent s{r.method, r.url, "", r.user, std::string(r.body), ""};
    for (const auto& h : r.headers) {
      if (h.starts_with("Authorization: ")) {
        s.authorization = h.substr(15);
      } else if (h.starts_with("Content-Type: ")) {
        s.content_type = h.substr(14);
      }
    }
    sent.push_back(s);
    HttpResponse out;
    if (r.url.starts_with("https://auth.test/token")) {
      out.status = r.user == "ci" && r.password == "pw" ? 200 : 401;
      out.body = R"({"token":"T1"})";
      return out;
    }
    if (s.authorization != "Bearer T1") {
      out.status = 401;
      out.headers["www-authenticate"] = R"(Bearer realm="https://auth.test/token",service="reg.test")";
      out.body = R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})";
      return out;
    }
    const std::string path = r.url.substr(std::string("https://reg.test").size());
    if (r.method == "HEAD" && path.find("/blobs/") != std::string::npos) {
      const bool held = std::any_of(present.begin(), present.end(),
                                    [&](const std::string& d) { return path.ends_with(d); });
      out.status = held ? 200 : 404;
    } else if (r.method == "HEAD" && path.find("/manifests/") != std::string::npos) {
      out.status = tag_digest.empty() ? 404 : 200;
      out.headers["docker-content-digest"] = tag_digest;
    } else if (r.method == "POST") {
      if (on_first_post) {
        std::exchange(on_first_post, nullptr)();
      }
      // A mount is refused the way distribution refuses one it cannot do: a 202 and
      // an upload session instead.
      out.status = 202;
      out.headers["location"] = "/v2/library/app/blobs/uploads/u" + std::to_string(sent.size());
    } else if (r.method == "PUT" && path.find("/blobs/") != std::string::npos) {
      out.status = put_blob_status;
      out.body = put_blob_body;
    } else if (r.method == "PUT") {
      out.status = 201;
    } else {
      out.status = 400;
    }
    return out;
  }

private:
  std::mutex mutex_;
};

class RegistryPush : public ::testing::Test {
protected:
  void SetUp() override {
    const auto archive = (scratch_ / "app.tar").string();
    ASSERT_TRUE(testing::mkimage({"--image", "app:v1=base:64K", archive}));
    ASSERT_TRUE(format::read_archive(archive, set_));
    ASSERT_EQ(set_.images.size(), 1u);
    image_ = &set_.images[0];
    options_.registry = RegistryAddress{"reg.test", ""};
    options_.credentials = Credentials{"ci", "pw"};
    options_.jobs = 1;
  }

  testing::Scratch scratch_;
  format::ImageSet set_;
  const format::Image* image_ = nullptr;
  PushOptions options_;
};

TEST_F(RegistryPush, FetchesABearerTokenOnceAndAnUnchangedPushOnlyAsks) {
  FakeRegistry fake;
  fake.present = {image_->config.digest.str(), image_->layers[0].blob.digest.str()};
  fake.tag_digest = image_->manifest.digest.str();
  auto report = push(set_, {image_}, options_, fake);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->blobs_present, 2u);
  EXPECT_EQ(report->blobs_uploaded, 0u);
  ASSERT_EQ(report->images.size(), 1u);
  EXPECT_FALSE(report->images[0].manifest_written);
  // HEAD (401), the token, HEAD again, the other blob, the manifest.
  ASSERT_EQ(fake.sent.size(), 5u);
  EXPECT_EQ(fake.sent[1].method, "GET");
  EXPECT_EQ(fake.sent[1].url,
            "https://auth.test/token?service=reg.test&scope=repository%3Alibrary%2Fapp%3Apull%2Cpush");
  EXPECT_EQ(fake.sent[1].user, "ci");
  for (std::size_t i = 2; i < fake.sent.size(); ++i) {
    EXPECT_EQ(fake.sent[i].method, "HEAD");
    EXPECT_EQ(fake.sent[i].authorization, "Bearer T1");
  }
  EXPECT_EQ(report->requests, (std::map<std::string, std::uint64_t>{{"GET", 1}, {"HEAD", 4}}));
}

TEST_F(RegistryPush, SendsTheMissingBlobsProvenThenTheManifestLast) {
  FakeRegistry fake;
  fake.present = {image_->config.digest.str()};
  auto report = push(set_, {image_}, options_, fake);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->blobs_uploaded, 1u);
  EXPECT_EQ(report->bytes_uploaded, image_->layers[0].blob.size);
  EXPECT_TRUE(report->images[0].manifest_written);
  std::vector<std::string> order;
  for (const auto& s : fake.sent) {
    if (s.method != "HEAD" && s.method != "GET") {
      order.push_back(s.method + " " + s.url.substr(0, s.url.find('?')));
    }
  }
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], "POST https://reg.test/v2/library/app/blobs/uploads/");
  EXPECT_TRUE(order[1].starts_with("PUT https://reg.test/v2/library/app/blobs/uploads/u")) << order[1];
  EXPECT_EQ(order[2], "PUT https://reg.test/v2/library/app/manifests/v1");
  const auto put = std::find_if(fake.sent.begin(), fake.sent.end(), [](const Sent& s) {
    return s.method == "PUT" && s.url.find("/blobs/") != std::string::npos;
  });
  EXPECT_TRUE(put->url.ends_with("?digest=" + image_->layers[0].blob.digest.str())) << put->url;
  EXPECT_EQ(put->body.size(), image_->layers[0].blob.size);
  const auto manifest = std::find_if(fake.sent.begin(), fake.sent.end(), [](const Sent& s) {
    return s.method == "PUT" && s.url.find("/manifests/") != std::string::npos;
  });
  EXPECT_EQ(manifest->body, image_->manifest_bytes);
}

TEST_F(RegistryPush, ARefusedTokenIsOneLineNamingTheRegistryAndBlob) {
  FakeRegistry fake;
  options_.credentials = Credentials{"ci", "wrong"};
  auto report = push(set_, {image_}, options_, fake);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().kind, util::ErrorKind::node);
  EXPECT_EQ(report.error().message.find('\n'), std::string::npos);
  EXPECT_TRUE(report.error().message.starts_with("registry reg.test: library/app: blob sha256:"))
      << report.error().message;
  EXPECT_NE(report.error().message.find("token from https://auth.test/token: HTTP 401"), std::string::npos)
      << report.error().message;
}

TEST_F(RegistryPush, ARefusedBlobIsOneLineWithTheRegistrysCodeAndNoManifestIsWritten) {
  FakeRegistry fake;
  fake.put_blob_status = 400;
  fake.put_blob_body = R"({"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]})";
  auto report = push(set_, {image_}, options_, fake);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().kind, util::ErrorKind::node);
  EXPECT_TRUE(report.error().message.starts_with("registry reg.test: library/app: blob sha256:"))
      << report.error().message;
  EXPECT_TRUE(report.error().message.ends_with(
      ": HTTP 400 (DIGEST_INVALID: provided digest did not match uploaded content)"))
      << report.error().message;
  for (const auto& s : fake.sent) {
    EXPECT_EQ(s.url.find("/manifests/"), std::string::npos) << s.method << " " << s.url;
  }
}

TEST_F(RegistryPush, AnInputChangedAfterItsProofNeverCompletesABlob) {
  FakeRegistry fake;
  fake.present = {image_->config.digest.str()};
  const format::Blob* layer = set_.find(image_->layers[0].blob.digest);
  ASSERT_NE(layer, nullptr);
  ASSERT_FALSE(layer->where.file.empty());  // read in place from the archive
  // Proven by then (every blob is hashed before the first upload starts): change one
  // byte of the layer in the archive, same size.
  fake.on_first_post = [&] {
    std::fstream f(layer->where.file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(layer->where.offset + layer->size / 2));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(layer->where.offset + layer->size / 2));
    f.write(&c, 1);
  };
  auto report = push(set_, {image_}, options_, fake);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(report.error().message.find("the input changed since it was read"), std::string::npos)
      << report.error().message;
  for (const auto& s : fake.sent) {
    EXPECT_NE(s.method, "PUT") << s.url;  // neither the blob's closing PUT nor a manifest
  }
}

TEST_F(RegistryPush, AMountTheRegistryRefusesBecomesAnUpload) {
  // Two names in two repositories: the layer goes to the first, then a mount into the
  // second, which this registry answers with an upload session.
  const auto archive = (scratch_ / "two.tar").string();
  ASSERT_TRUE(testing::mkimage({"--image", "app:v1=base:64K", "--image", "other:v1=base:64K,x:1K", archive}));
  format::ImageSet set;
  ASSERT_TRUE(format::read_archive(archive, set));
  std::vector<const format::Image*> images;
  for (const auto& i : set.images) {
    images.push_back(&i);
  }
  FakeRegistry fake;
  auto report = push(set, images, options_, fake);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->blobs_mounted, 0u);
  EXPECT_EQ(report->blobs_uploaded, 5u);  // two configs, base twice, x
  const auto mounts = std::count_if(fake.sent.begin(), fake.sent.end(), [](const Sent& s) {
    return s.method == "POST" && s.authorization == "Bearer T1" && s.url.find("?mount=") != std::string::npos &&
           s.url.find("&from=library/app") != std::string::npos;
  });
  EXPECT_EQ(mounts, 1);
  // The mount's token also asks to pull from the source repository.
  const auto token = std::count_if(fake.sent.begin(), fake.sent.end(), [](const Sent& s) {
    return s.url.ends_with("scope=repository%3Alibrary%2Fother%3Apull%2Cpush&scope=repository%3Alibrary%2Fapp%3Apull");
  });
  EXPECT_EQ(token, 1);
}

// The manifests and index PUTs of `sent`, as "URL-path content-type", in order.
std::vector<std::string> manifest_puts(const std::vector<Sent>& sent) {
  std::vector<std::string> out;
  for (const auto& s : sent) {
    if (s.method == "PUT" && s.url.find("/manifests/") != std::string::npos) {
      out.push_back(s.url.substr(std::string("https://reg.test").size()) + " " + s.content_type);
    }
  }
  return out;
}

class RegistryPushIndex : public RegistryPush {
protected:
  void SetUp() override {
    RegistryPush::SetUp();
    const auto archive = (scratch_ / "multi.tar").string();
    ASSERT_TRUE(testing::mkimage({"--layout", "docker25", "--nested-index", "--platforms", "linux/amd64,linux/arm64",
                                  "--image", "app:v1=base:16K", archive}));
    ASSERT_TRUE(format::read_archive(archive, multi_));
    ASSERT_EQ(multi_.images.size(), 2u);
    ASSERT_EQ(multi_.images[0].indexes.size(), 1u);
  }

  format::ImageSet multi_;
};

TEST_F(RegistryPushIndex, EveryPlatformsManifestByDigestThenTheIndexUnderTheTag) {
  FakeRegistry fake;
  auto report = push(multi_, {&multi_.images[0], &multi_.images[1]}, options_, fake);
  ASSERT_TRUE(report) << report.error().message;
  ASSERT_EQ(report->images.size(), 2u);
  EXPECT_TRUE(report->images[0].under_index);
  EXPECT_TRUE(report->images[1].under_index);
  EXPECT_EQ(report->blobs_uploaded, 4u);  // two configs, two layers
  ASSERT_EQ(report->indexes.size(), 1u);
  const auto& index = multi_.images[0].indexes[0];
  EXPECT_EQ(report->indexes[0].index.digest, index.digest);
  EXPECT_TRUE(report->indexes[0].written);
  const auto puts = manifest_puts(fake.sent);
  ASSERT_EQ(puts.size(), 3u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& m = multi_.images[i].manifest;
    EXPECT_EQ(puts[i], "/v2/library/app/manifests/" + m.digest.str() + " " + m.media_type);
  }
  EXPECT_EQ(puts[2], std::string("/v2/library/app/manifests/v1 ") + format::media_type::oci_index);
  // The index goes as the input holds it, after every blob.
  const auto last = fake.sent.back();
  EXPECT_EQ(util::Sha256::of(last.body), index.digest);
  const auto first_manifest = std::find_if(fake.sent.begin(), fake.sent.end(), [](const Sent& s) {
    return s.method == "PUT" && s.url.find("/manifests/") != std::string::npos;
  });
  EXPECT_TRUE(std::none_of(first_manifest, fake.sent.end(), [](const Sent& s) {
    return s.method == "POST" || s.url.find("/blobs/") != std::string::npos;
  }));
}

TEST_F(RegistryPushIndex, OnePlatformOfTheIndexGetsItsManifestUnderTheTag) {
  FakeRegistry fake;
  auto report = push(multi_, {&multi_.images[1]}, options_, fake);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_TRUE(report->indexes.empty());
  EXPECT_FALSE(report->images[0].under_index);
  const auto& m = multi_.images[1].manifest;
  EXPECT_EQ(manifest_puts(fake.sent), std::vector<std::string>{"/v2/library/app/manifests/v1 " + m.media_type});
}

TEST_F(RegistryPushIndex, TwoImagesUnderOneTagThatAreNotOneIndexAreRefused) {
  FakeRegistry fake;
  // The arm64 platform and an unrelated image of the same name.
  const auto archive = (scratch_ / "other.tar").string();
  ASSERT_TRUE(testing::mkimage({"--image", "app:v1=other:4K", archive}));
  format::ImageSet both;
  ASSERT_TRUE(format::read_archive((scratch_ / "multi.tar").string(), both));
  ASSERT_TRUE(format::read_archive(archive, both));
  ASSERT_EQ(both.images.size(), 3u);
  auto report = push(both, {&both.images[1], &both.images[2]}, options_, fake);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(report.error().message.find("reg.test/library/app:v1 would name two images"), std::string::npos)
      << report.error().message;
  EXPECT_TRUE(fake.sent.empty());
}

} // namespace
} // namespace kload::registry
