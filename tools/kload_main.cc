// kload: load container images into Kubernetes nodes without a registry.
#include "kload/cli/app.h"

int main(int argc, char** argv) { return kload::cli::run(argc, argv); }
