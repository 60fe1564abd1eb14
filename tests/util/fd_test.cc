#include "kload/util/fd.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>
#include <utility>

namespace kload::util {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

TEST(Fd, ClosesWhatItOwnsOnce) {
  int raw = -1;
  {
    auto p = make_pipe();
    ASSERT_TRUE(p.has_value()) << p.error().message;
    raw = p->read.get();
    EXPECT_TRUE(is_open(raw));
    EXPECT_TRUE(p->read.valid());
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(Fd, MovesOwnership) {
  auto p = make_pipe();
  ASSERT_TRUE(p.has_value());
  const int raw = p->write.get();
  Fd moved(std::move(p->write));
  EXPECT_FALSE(p->write.valid());
  EXPECT_EQ(moved.get(), raw);
  Fd assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.get(), raw);
  EXPECT_FALSE(moved.valid());
  EXPECT_TRUE(is_open(raw));
}

TEST(Fd, ReleaseGivesItUpAndResetReplacesIt) {
  auto p = make_pipe();
  ASSERT_TRUE(p.has_value());
  const int r = p->read.release();
  EXPECT_FALSE(p->read.valid());
  EXPECT_TRUE(is_open(r));
  const int w = p->write.get();
  p->write.reset(r);  // closes the write end, owns the read end
  EXPECT_FALSE(is_open(w));
  EXPECT_EQ(p->write.get(), r);
  p->write.reset();
  EXPECT_FALSE(is_open(r));
}

TEST(Fd, PipesAndOpenedFilesAreCloseOnExec) {
  auto p = make_pipe();
  ASSERT_TRUE(p.has_value());
  EXPECT_NE(::fcntl(p->read.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(::fcntl(p->write.get(), F_GETFD) & FD_CLOEXEC, 0);
  auto f = open_fd("/dev/null", O_RDONLY);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(::fcntl(f->get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(Fd, OpenFailureNamesThePathAndKeepsErrno) {
  auto f = open_fd("/nonexistent/kload-test", O_RDONLY);
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(f.error().message.find("/nonexistent/kload-test"), std::string::npos) << f.error().message;
}

} // namespace
} // namespace kload::util
