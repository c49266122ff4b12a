// Fds that live for one FUSE request. An Inode kept by file handle (past the
// pinned-fd budget, inode_table.h) is opened by Inode::Fd() at most once per
// request and closed when the handler returns: ops_table.cc wraps every
// handler in CloseRequestFds().
#pragma once

namespace replifs::fusefs {

struct Inode;

// An O_PATH fd of a by-handle inode, opened once per request on this thread;
// -1 (errno set) if the handle does not open any more (ESTALE: deleted).
int OpenForRequest(const Inode& inode);
// Closes what OpenForRequest opened on this thread.
void CloseRequestFds();

}  // namespace replifs::fusefs
