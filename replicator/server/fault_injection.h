// Named fault-injection points for tests of crash and error recovery.
//
// A point is armed by the environment variable REPLIFS_FAULT (read once per
// process) or, in unit tests, by Arm(). Syntax: comma-separated
//   POINT[:ACTION][@N]
// ACTION is kill (SIGKILL this process; the default), eio, enospc, short (the
// point's write is cut in half where the point supports it) or delay=MS.
// @N fires on the N-th hit only (default: the first). Unarmed points cost one
// relaxed atomic load. The points: see kKnownPoints in fault_injection.cc.
//
// REPLIFS_FAULT_NOTES=DIR makes Note() write small facts (e.g. the journal's
// synced position) to DIR/NAME, replaced atomically, for a test to read after
// it killed the process.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace replifs::fault {

enum class Action { kNone, kKill, kEio, kEnospc, kShort, kDelay };

// Counts a hit of `point`; kills the process or sleeps if so armed and returns
// the armed action (kNone when not armed or not this hit).
Action Hit(const char* point);

// Hit() mapped to a Status: kEio/kEnospc/kShort give an error naming the point.
absl::Status Check(const char* point);

// Tests: replace every armed point with `spec` (REPLIFS_FAULT syntax); "" disarms.
// Returns InvalidArgument for an unknown point or action.
absl::Status Arm(const std::string& spec);

// How often `point` was hit since it was armed (tests).
int Hits(const char* point);

// Writes `value` to $REPLIFS_FAULT_NOTES/name (tmp + rename) if that is set.
void Note(const char* name, const std::string& value);
bool NotesEnabled();

}  // namespace replifs::fault
