#include "replicator/telemetry/metrics.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace replifs::telemetry {
namespace {

bool ValidName(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == ':';
    if (!ok) return false;
  }
  return true;
}

// HELP text escapes backslash and newline; label values also the quote.
std::string Escape(const std::string& text, bool quote) {
  std::string out;
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", value);
  return buf;
}

}  // namespace

std::string FormatLabels(const std::vector<std::string>& names,
                         const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (i > 0) out += ",";
    out += names[i] + "=\"" + Escape(values[i], /*quote=*/true) + "\"";
  }
  return out + "}";
}

Counter* CounterFamily::With(const std::vector<std::string>& label_values) {
  std::lock_guard lock(mutex_);
  std::unique_ptr<Counter>& child = children_[label_values];
  if (child == nullptr) child = std::make_unique<Counter>();
  return child.get();
}

std::vector<std::pair<std::string, uint64_t>> CounterFamily::Samples() const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [values, counter] : children_) {
    out.emplace_back(FormatLabels(label_names_, values), counter->value());
  }
  return out;
}

MetricsRegistry::Metric& MetricsRegistry::Register(const std::string& name, const std::string& help,
                                                   bool is_counter) {
  // A bad name is a programming error: fail loudly at startup, not at scrape.
  if (!ValidName(name)) throw std::invalid_argument("invalid metric name " + name);
  for (const auto& metric : metrics_) {
    if (metric->name == name) throw std::invalid_argument("metric registered twice: " + name);
  }
  auto metric = std::make_unique<Metric>();
  metric->name = name;
  metric->help = help;
  metric->is_counter = is_counter;
  metrics_.push_back(std::move(metric));
  return *metrics_.back();
}

Counter* MetricsRegistry::AddCounter(const std::string& name, const std::string& help) {
  std::lock_guard lock(mutex_);
  Metric& metric = Register(name, help, true);
  metric.counter = std::make_unique<Counter>();
  return metric.counter.get();
}

CounterFamily* MetricsRegistry::AddCounterFamily(const std::string& name, const std::string& help,
                                                 std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  Metric& metric = Register(name, help, true);
  metric.family = std::make_unique<CounterFamily>(std::move(label_names));
  return metric.family.get();
}

void MetricsRegistry::AddCounterFunction(const std::string& name, const std::string& help,
                                         std::function<uint64_t()> read) {
  std::lock_guard lock(mutex_);
  Register(name, help, true).read_counter = std::move(read);
}

void MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                               std::function<double()> read) {
  std::lock_guard lock(mutex_);
  Register(name, help, false).read_gauge = std::move(read);
}

std::string MetricsRegistry::RenderText() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& metric : metrics_) {
    out += "# HELP " + metric->name + " " + Escape(metric->help, /*quote=*/false) + "\n";
    out += "# TYPE " + metric->name + (metric->is_counter ? " counter\n" : " gauge\n");
    if (metric->counter) {
      out += metric->name + " " + std::to_string(metric->counter->value()) + "\n";
    } else if (metric->family) {
      for (const auto& [labels, value] : metric->family->Samples()) {
        out += metric->name + labels + " " + std::to_string(value) + "\n";
      }
    } else if (metric->read_counter) {
      out += metric->name + " " + std::to_string(metric->read_counter()) + "\n";
    } else {
      out += metric->name + " " + FormatDouble(metric->read_gauge()) + "\n";
    }
  }
  return out;
}

}  // namespace replifs::telemetry
