// Copies a file still open for writing at a state the program wrote
// (replicator/client/whole_state.h): asks fusefs for a copy at the next
// FSYNC of the inode (fusefs/fsync_copies.h), then fdatasyncs a read-only
// descriptor opened on the mount, whose FSYNC the kernel sends under the
// inode lock once every dirty page is written back.
#pragma once

#include <string>

#include "fusefs/fsync_copies.h"
#include "replicator/client/whole_state.h"

namespace replifs::cli {

class OverlayWholeState : public client::WholeStateSource {
 public:
  // `mountpoint` is absolute; `copies` outlives this (until Unmount).
  OverlayWholeState(std::string mountpoint, fusefs::FsyncCopies* copies)
      : mountpoint_(std::move(mountpoint)), copies_(copies) {}

  absl::StatusOr<client::StableCopy> CopyWholeState(uint64_t inode,
                                                    const std::string& path) const override;

 private:
  const std::string mountpoint_;
  fusefs::FsyncCopies* const copies_;
};

}  // namespace replifs::cli
