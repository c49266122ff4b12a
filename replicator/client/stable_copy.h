// A consistent copy of a file that never stops changing. SnapshotNode reads a
// file in place and keeps it only if it did not change meanwhile; a file
// written without pause fails that check every time. This copies it, fast
// and in the kernel, into an unnamed file: the copy is kept only if the
// source kept one generation (size, mtime, ctime) throughout and still
// equals the copy byte for byte afterwards (which also catches a write that
// was in progress at the first stat: its time stamp is set before its data).
// The copy then is read at leisure: it is a state the file really had.
#pragma once

#include <sys/stat.h>

#include "absl/status/statusor.h"

namespace replifs::client {

struct StableCopy {
  int fd = -1;              // the copy, open for reading; the caller closes it
  struct stat source {};    // the source's generation the copy holds
};

// `root_fd` names the backing directory: the copy is an O_TMPFILE on the
// same filesystem (so copy_file_range may share extents), or a memfd where
// O_TMPFILE is not supported. Retries up to `attempts` times; AbortedError
// if the source changed during each of them.
absl::StatusOr<StableCopy> CopyWhileUnchanged(int root_fd, int source_fd, int attempts);

}  // namespace replifs::client
