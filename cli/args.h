// A small command-line parser for subcommands: `--name value`, `--name=value`
// and boolean `--flag`; everything else is positional.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace replifs::cli {

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  std::set<std::string> flags;

  bool Has(const std::string& name) const { return values.count(name) || flags.count(name); }
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};

// `with_value` names options that take a value, `booleans` those that don't;
// anything else starting with "--" is an error.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv,
                               const std::set<std::string>& with_value,
                               const std::set<std::string>& booleans);

}  // namespace replifs::cli
