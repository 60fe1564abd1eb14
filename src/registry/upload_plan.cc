#include "kload/registry/upload_plan.h"

namespace kload::registry {

std::vector<BlobStep> plan_uploads(const std::string& repository, const std::vector<util::Digest>& blobs,
                                   const std::unordered_set<util::Digest>& present,
                                   const std::unordered_map<util::Digest, std::string>& holders) {
  std::vector<BlobStep> steps;
  std::unordered_set<util::Digest> seen;
  for (const auto& d : blobs) {
    if (!seen.insert(d).second) {
      continue;
    }
    BlobStep step;
    step.digest = d;
    if (present.contains(d)) {
      step.action = BlobAction::present;
    } else if (const auto h = holders.find(d); h != holders.end() && h->second != repository) {
      step.action = BlobAction::mount;
      step.from = h->second;
    } else {
      step.action = BlobAction::upload;
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

} // namespace kload::registry
