#pragma once
// What a push sends to one repository, decided from what the registry said it holds.
// Pure: HEAD answers in, actions out.

#include "kload/util/digest.h"

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kload::registry {

enum class BlobAction {
  present,  // HEAD said the repository has it: nothing sent
  mount,    // another repository of this push holds it: a cross-repository mount
  upload,   // its bytes are sent
};

struct BlobStep {
  util::Digest digest;
  BlobAction action = BlobAction::upload;
  std::string from;  // mount: the repository it is mounted from
};

// One step per distinct digest of `blobs` (first occurrence order): present when in
// `present`, else mount from `holders`' repository when it names one other than
// `repository`, else upload.
std::vector<BlobStep> plan_uploads(const std::string& repository, const std::vector<util::Digest>& blobs,
                                   const std::unordered_set<util::Digest>& present,
                                   const std::unordered_map<util::Digest, std::string>& holders);

} // namespace kload::registry
