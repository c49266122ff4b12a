// Counters and gauges of one process, rendered in the Prometheus text format
// (version 0.0.4: HELP and TYPE lines, then one sample per line).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace replifs::telemetry {

class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Counters that share a name and differ by label values, e.g.
// requests_total{method="Apply",code="OK"}.
class CounterFamily {
 public:
  explicit CounterFamily(std::vector<std::string> label_names)
      : label_names_(std::move(label_names)) {}
  // The counter for these label values (one per label name), created at first use.
  Counter* With(const std::vector<std::string>& label_values);
  // Each child as (rendered label set, value), sorted by labels.
  std::vector<std::pair<std::string, uint64_t>> Samples() const;

 private:
  const std::vector<std::string> label_names_;
  mutable std::mutex mutex_;  // guards children_; the counters themselves are atomic
  std::map<std::vector<std::string>, std::unique_ptr<Counter>> children_;
};

class MetricsRegistry {
 public:
  // Names must be unique and match [a-zA-Z_:][a-zA-Z0-9_:]*; the returned
  // objects live as long as the registry.
  Counter* AddCounter(const std::string& name, const std::string& help);
  CounterFamily* AddCounterFamily(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names);
  // Read when scraped, from whatever thread serves the scrape: `read` must be
  // thread-safe and quick. A counter must never go down.
  void AddCounterFunction(const std::string& name, const std::string& help,
                          std::function<uint64_t()> read);
  void AddGauge(const std::string& name, const std::string& help, std::function<double()> read);

  // Every metric in registration order, in the Prometheus text format.
  std::string RenderText() const;

 private:
  struct Metric {
    std::string name;
    std::string help;
    bool is_counter = false;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<CounterFamily> family;
    std::function<uint64_t()> read_counter;
    std::function<double()> read_gauge;
  };
  Metric& Register(const std::string& name, const std::string& help, bool is_counter);

  mutable std::mutex mutex_;  // guards metrics_ (registration while serving scrapes)
  std::vector<std::unique_ptr<Metric>> metrics_;
};

// "NAME{a="x",b="y"}" with values escaped as the text format requires.
std::string FormatLabels(const std::vector<std::string>& names,
                         const std::vector<std::string>& values);

}  // namespace replifs::telemetry
