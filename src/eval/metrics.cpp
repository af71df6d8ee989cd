#include "eval/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include "util/error.h"

namespace seqit::eval {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower(c);
  return out;
}

// One number written in text, found by scan_number.
struct NumberToken {
  size_t begin = 0, end = 0;  // [begin, end) in the text, sign and '$' included
  double value = 0;
};

// Reads a number that starts exactly at `pos`: [-][$]digits(,ddd)*[.digits*] or [-][$].digits.
// A trailing '.' without digits is consumed ("12." = 12) only when no digit follows it.
std::optional<NumberToken> scan_number(std::string_view s, size_t pos) {
  NumberToken t;
  t.begin = pos;
  size_t i = pos;
  bool negative = false;
  if (i < s.size() && s[i] == '-') negative = true, ++i;
  if (i < s.size() && s[i] == '$') ++i;
  std::string digits;  // the number without '$' and separators, for strtod
  size_t int_start = i;
  while (i < s.size() && is_digit(s[i])) digits += s[i++];
  const bool has_int = i > int_start;
  // Thousands groups: a comma followed by exactly three digits (and not a fourth).
  while (has_int && i + 3 < s.size() && s[i] == ',' && is_digit(s[i + 1]) && is_digit(s[i + 2]) &&
         is_digit(s[i + 3]) && !(i + 4 < s.size() && is_digit(s[i + 4]))) {
    digits.append(s.substr(i + 1, 3));
    i += 4;
  }
  bool has_frac = false;
  if (i < s.size() && s[i] == '.') {
    if (i + 1 < s.size() && is_digit(s[i + 1])) {
      digits += '.';
      ++i;
      while (i < s.size() && is_digit(s[i])) digits += s[i++];
      has_frac = true;
    } else if (has_int) {
      ++i;  // "12." ends a sentence or is written that way; the value is 12
    }
  }
  if (!has_int && !has_frac) return std::nullopt;
  t.end = i;
  t.value = std::strtod(digits.c_str(), nullptr);
  if (negative) t.value = -t.value;
  return t;
}

// Where a number may start: a digit, or '-', '$' or '.' leading to one; a '-' that follows a letter
// or digit is an operator or a hyphen, not a sign.
bool may_start_number(std::string_view s, size_t i) {
  if (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.')) return false;
  const char c = s[i];
  if (is_digit(c)) return true;
  if (c == '-')
    return (i == 0 || !(is_alpha(s[i - 1]) || is_digit(s[i - 1]))) && i + 1 < s.size() &&
           (is_digit(s[i + 1]) || s[i + 1] == '$' || s[i + 1] == '.');
  if (c == '$' || c == '.') return i + 1 < s.size() && (is_digit(s[i + 1]) || s[i + 1] == '.');
  return false;
}

std::vector<NumberToken> all_numbers(std::string_view s) {
  std::vector<NumberToken> out;
  size_t i = 0;
  while (i < s.size()) {
    if (may_start_number(s, i)) {
      if (auto t = scan_number(s, i)) {
        out.push_back(*t);
        i = t->end;
        continue;
      }
    }
    ++i;
  }
  return out;
}

// Skips whitespace, markdown emphasis and the given extra characters from `i`.
size_t skip_decoration(std::string_view s, size_t i, std::string_view extra) {
  while (i < s.size() && (is_space(s[i]) || s[i] == '*' || s[i] == '_' ||
                          extra.find(s[i]) != std::string_view::npos))
    ++i;
  return i;
}

// Every end offset (just past the cue) of the case-insensitive `cue` in `text`.
std::vector<size_t> cue_ends(const std::string& lower_text, std::string_view cue) {
  std::vector<size_t> ends;
  for (size_t p = lower_text.find(cue); p != std::string::npos; p = lower_text.find(cue, p + 1))
    ends.push_back(p + cue.size());
  return ends;
}

bool is_squad_punct(char c) {
  static constexpr std::string_view kPunct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
  return kPunct.find(c) != std::string_view::npos;
}

std::vector<std::string> split_spaces(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

double token_f1(const std::vector<std::string>& pred, const std::vector<std::string>& gold) {
  if (pred.empty() || gold.empty()) return pred.empty() && gold.empty() ? 1.0 : 0.0;
  std::map<std::string, int64_t> counts;
  for (const auto& t : gold) ++counts[t];
  int64_t same = 0;
  for (const auto& t : pred) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) --it->second, ++same;
  }
  if (same == 0) return 0.0;
  const double p = static_cast<double>(same) / static_cast<double>(pred.size());
  const double r = static_cast<double>(same) / static_cast<double>(gold.size());
  return 2 * p * r / (p + r);
}

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same sequence on every platform.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); the modulo bias is below n / 2^64, far under any sampling error here.
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

// numpy.quantile's default ("linear"): position q * (n - 1) in the sorted values.
double quantile_sorted(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

void check_bootstrap_options(const BootstrapOptions& o) {
  if (o.resamples < 1)
    throw Error(fmt::format("bootstrap: resamples must be >= 1, got {}", o.resamples));
  if (!(o.confidence > 0 && o.confidence < 1))
    throw Error(fmt::format("bootstrap: confidence must be in (0, 1), got {}", o.confidence));
}

// Resamples item indices and returns the interval of `statistic(indices)`.
template <typename Statistic>
ConfidenceInterval percentile_bootstrap(size_t n, const BootstrapOptions& o, double estimate,
                                        Statistic statistic) {
  check_bootstrap_options(o);
  SplitMix64 rng{o.seed};
  std::vector<double> stats(static_cast<size_t>(o.resamples));
  std::vector<size_t> idx(n);
  for (double& s : stats) {
    for (size_t& i : idx) i = rng.below(n);
    s = statistic(idx);
  }
  std::sort(stats.begin(), stats.end());
  const double alpha = 1 - o.confidence;
  return {estimate, quantile_sorted(stats, alpha / 2), quantile_sorted(stats, 1 - alpha / 2)};
}

double mean_of(std::span<const double> v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double sigmoid(double x) {
  // The two branches keep exp from overflowing for large |x|.
  if (x >= 0) return 1 / (1 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1 + e);
}

// log(1 + exp(x)) without overflow.
double softplus(double x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

}  // namespace

// ---- Numbers
// ----------------------------------------------------------------------------------------

std::optional<double> parse_number(std::string_view token) {
  token = trim(token);
  if (token.empty()) return std::nullopt;
  auto t = scan_number(token, 0);
  if (!t || t->end != token.size()) return std::nullopt;
  return t->value;
}

std::optional<double> extract_last_number(std::string_view text) {
  auto numbers = all_numbers(text);
  if (numbers.empty()) return std::nullopt;
  return numbers.back().value;
}

std::optional<double> extract_cued_number(std::string_view text) {
  const std::string lower = lower_ascii(text);
  // (cue end offset, number) for every cue followed by a number; the last in the text wins.
  std::optional<std::pair<size_t, double>> best;
  for (std::string_view cue : {std::string_view("####"), std::string_view("the answer is")}) {
    for (size_t end : cue_ends(lower, cue)) {
      const size_t i = skip_decoration(text, end, ":$");
      // '$' was skipped as decoration; a '-' right after it is still read by scan_number.
      if (i >= text.size()) continue;
      if (auto t = scan_number(text, i)) {
        if (!best || end > best->first) best = std::make_pair(end, t->value);
      }
    }
  }
  if (!best) return std::nullopt;
  return best->second;
}

bool numbers_equal(double a, double b) {
  const double scale = std::max({1.0, std::fabs(a), std::fabs(b)});
  return std::fabs(a - b) <= 1e-6 * scale;
}

// ---- BBH and multiple choice
// ----------------------------------------------------------------------------

std::optional<std::string> extract_bbh_answer(std::string_view text) {
  const std::string lower = lower_ascii(text);
  const auto ends = cue_ends(lower, "the answer is");
  if (ends.empty()) return std::nullopt;
  size_t i = ends.back();
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == ':')) ++i;
  size_t j = i;
  while (j < text.size() && text[j] != '\n') {
    if (text[j] == '.' && (j + 1 == text.size() || is_space(text[j + 1]))) break;
    ++j;
  }
  std::string_view answer = trim(text.substr(i, j - i));
  while (!answer.empty() && (answer.front() == '*' || answer.front() == '_'))
    answer.remove_prefix(1);
  while (!answer.empty() && (answer.back() == '*' || answer.back() == '_')) answer.remove_suffix(1);
  answer = trim(answer);
  if (answer.empty()) return std::nullopt;
  return std::string(answer);
}

namespace {

bool is_option(char c, int options) {
  return c >= 'A' && c < 'A' + options;
}

void check_options(int options) {
  if (options < 1 || options > 26)
    throw Error(fmt::format("choice extraction: options must be in 1..26, got {}", options));
}

// The letter written at `i` as `B`, `(B)` or `B.`, standing alone (not the start of a word).
std::optional<char> letter_at(std::string_view s, size_t i, int options) {
  if (i < s.size() && s[i] == '(') {
    if (i + 2 < s.size() && is_option(s[i + 1], options) && s[i + 2] == ')') return s[i + 1];
    return std::nullopt;
  }
  if (i < s.size() && is_option(s[i], options) &&
      (i + 1 == s.size() || !(is_alpha(s[i + 1]) || is_digit(s[i + 1]))))
    return s[i];
  return std::nullopt;
}

}  // namespace

std::optional<char> extract_choice_strict(std::string_view text, int options) {
  check_options(options);
  const std::string lower = lower_ascii(text);
  std::optional<std::pair<size_t, char>> best;
  for (std::string_view cue : {std::string_view("the answer is"), std::string_view("answer:")}) {
    for (size_t end : cue_ends(lower, cue)) {
      const size_t i = skip_decoration(text, end, ":");
      if (auto c = letter_at(text, i, options)) {
        if (!best || end > best->first) best = std::make_pair(end, *c);
      }
    }
  }
  if (!best) return std::nullopt;
  return best->second;
}

std::optional<char> extract_choice_flexible(std::string_view text, int options) {
  if (auto strict = extract_choice_strict(text, options)) return strict;
  // The last "(B)" anywhere.
  for (size_t p = text.size(); p-- > 0;) {
    if (text[p] == '(' && p + 2 < text.size() && is_option(text[p + 1], options) &&
        text[p + 2] == ')')
      return text[p + 1];
  }
  // The last line that starts with "B." or "B)".
  std::optional<char> found;
  size_t line_start = 0;
  while (line_start <= text.size()) {
    size_t i = line_start;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '*')) ++i;
    if (i + 1 < text.size() && is_option(text[i], options) &&
        (text[i + 1] == '.' || text[i + 1] == ')'))
      found = text[i];
    const size_t nl = text.find('\n', line_start);
    if (nl == std::string_view::npos) break;
    line_start = nl + 1;
  }
  return found;
}

// ---- SQuAD
// ----------------------------------------------------------------------------------------------

std::string normalize_squad_answer(std::string_view text) {
  std::string no_punct;
  no_punct.reserve(text.size());
  for (char c : text)
    if (!is_squad_punct(c)) no_punct += to_lower(c);
  // Articles are whole words (regex \b(a|an|the)\b); punctuation is gone, so words are runs of
  // non-space. Dropping them and re-joining with single spaces does the whitespace fix too.
  std::string out;
  for (const std::string& w : split_spaces(no_punct)) {
    if (w == "a" || w == "an" || w == "the") continue;
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

double squad_exact_match(std::string_view prediction, std::span<const std::string> golds) {
  const std::string p = normalize_squad_answer(prediction);
  for (const auto& g : golds)
    if (normalize_squad_answer(g) == p) return 1.0;
  return 0.0;
}

double squad_f1(std::string_view prediction, std::span<const std::string> golds) {
  if (golds.empty()) throw Error("squad_f1: no gold answers");
  const auto pred = split_spaces(normalize_squad_answer(prediction));
  double best = 0;
  for (const auto& g : golds)
    best = std::max(best, token_f1(pred, split_spaces(normalize_squad_answer(g))));
  return best;
}

// ---- ROUGE-L
// ----------------------------------------------------------------------------------------------

std::vector<std::string> rouge_tokens(std::string_view text) {
  std::string mapped(text);
  for (char& c : mapped) {
    c = to_lower(c);
    if (!((c >= 'a' && c <= 'z') || is_digit(c))) c = ' ';
  }
  return split_spaces(mapped);
}

RougeScore rouge_l(std::string_view prediction, std::string_view reference) {
  const auto p = rouge_tokens(prediction);
  const auto r = rouge_tokens(reference);
  if (p.empty() || r.empty()) return {};
  // LCS by dynamic programming over (|r|+1) x (|p|+1), two rows at a time.
  std::vector<int64_t> prev(p.size() + 1, 0), cur(p.size() + 1, 0);
  for (size_t i = 1; i <= r.size(); ++i) {
    for (size_t j = 1; j <= p.size(); ++j)
      cur[j] = r[i - 1] == p[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  const double lcs = static_cast<double>(prev[p.size()]);
  RougeScore s;
  s.precision = lcs / static_cast<double>(p.size());
  s.recall = lcs / static_cast<double>(r.size());
  s.f1 = lcs == 0 ? 0 : 2 * s.precision * s.recall / (s.precision + s.recall);
  return s;
}

// ---- pass@k
// ----------------------------------------------------------------------------------------------

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  if (n < 1 || c < 0 || c > n || k < 1 || k > n)
    throw Error(fmt::format("pass@k: need n >= 1, 0 <= c <= n, 1 <= k <= n; got n={}, c={}, k={}",
                            n, c, k));
  if (n - c < k) return 1.0;  // every k-subset holds a correct sample
  double all_wrong = 1.0;     // C(n-c, k) / C(n, k)
  for (int64_t i = n - c + 1; i <= n; ++i)
    all_wrong *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - all_wrong;
}

// ---- Bootstrap
// ---------------------------------------------------------------------------------------------

ConfidenceInterval bootstrap_mean_ci(std::span<const double> scores,
                                     const BootstrapOptions& options) {
  if (scores.empty()) throw Error("bootstrap: no scores");
  return percentile_bootstrap(scores.size(), options, mean_of(scores),
                              [&](const std::vector<size_t>& idx) {
                                double s = 0;
                                for (size_t i : idx) s += scores[i];
                                return s / static_cast<double>(idx.size());
                              });
}

ConfidenceInterval paired_bootstrap_diff_ci(std::span<const double> a, std::span<const double> b,
                                            const BootstrapOptions& options) {
  if (a.empty() || a.size() != b.size())
    throw Error(fmt::format(
        "paired bootstrap: need two score lists of the same non-zero size, got {} and {}", a.size(),
        b.size()));
  return percentile_bootstrap(a.size(), options, mean_of(a) - mean_of(b),
                              [&](const std::vector<size_t>& idx) {
                                double s = 0;
                                for (size_t i : idx) s += a[i] - b[i];
                                return s / static_cast<double>(idx.size());
                              });
}

// ---- Length-controlled win rate
// -------------------------------------------------------------------------------

LengthControlledWinRate length_controlled_win_rate(std::span<const double> preferences,
                                                   std::span<const double> length_differences,
                                                   const LengthControlOptions& options) {
  const size_t n = preferences.size();
  if (n == 0 || n != length_differences.size())
    throw Error(fmt::format(
        "LC win rate: need as many length differences as preferences (non-zero), got {} and {}", n,
        length_differences.size()));
  for (size_t i = 0; i < n; ++i)
    if (!(preferences[i] >= 0 && preferences[i] <= 1))
      throw Error(fmt::format("LC win rate: preference {} of item {} is outside [0, 1]",
                              preferences[i], i));
  if (options.l2 < 0) throw Error("LC win rate: l2 must be >= 0");

  LengthControlledWinRate r;
  r.items = static_cast<int64_t>(n);
  r.raw_win_rate = mean_of(preferences);

  // z_i = tanh(d_i / s), s = sample standard deviation of d (pandas' std, ddof = 1).
  const double mean_d = mean_of(length_differences);
  double ss = 0;
  for (double d : length_differences) ss += (d - mean_d) * (d - mean_d);
  r.length_scale = n > 1 ? std::sqrt(ss / static_cast<double>(n - 1)) : 0;
  std::vector<double> z(n, 0.0);
  if (r.length_scale > 0)
    for (size_t i = 0; i < n; ++i) z[i] = std::tanh(length_differences[i] / r.length_scale);

  const double lambda = options.l2;
  // Penalised negative log-likelihood: sum softplus(eta) - y * eta, + lambda/2 |theta|^2.
  auto loss = [&](double a, double b) {
    double l = 0.5 * lambda * (a * a + b * b);
    for (size_t i = 0; i < n; ++i) {
      const double eta = a + b * z[i];
      l += softplus(eta) - preferences[i] * eta;
    }
    return l;
  };
  double a = 0, b = 0, current = loss(a, b);
  for (r.iterations = 0; r.iterations < options.max_iterations; ++r.iterations) {
    // Gradient g and Hessian H (2x2, symmetric, positive definite when lambda > 0 or z varies).
    double ga = lambda * a, gb = lambda * b, haa = lambda, hab = 0, hbb = lambda;
    for (size_t i = 0; i < n; ++i) {
      const double p = sigmoid(a + b * z[i]);
      const double w = p * (1 - p);
      ga += p - preferences[i];
      gb += (p - preferences[i]) * z[i];
      haa += w;
      hab += w * z[i];
      hbb += w * z[i] * z[i];
    }
    const double det = haa * hbb - hab * hab;
    if (!(det > 0)) break;  // flat in some direction (lambda = 0 and degenerate data): stop here
    const double da = -(hbb * ga - hab * gb) / det;
    const double db = -(haa * gb - hab * ga) / det;
    double t = 1;
    double next = loss(a + da, b + db);
    while (next > current && t > 1e-10) {
      t *= 0.5;
      next = loss(a + t * da, b + t * db);
    }
    if (next > current) break;
    a += t * da;
    b += t * db;
    const bool converged = std::fabs(t * da) + std::fabs(t * db) < 1e-10;
    current = next;
    if (converged) {
      ++r.iterations;
      break;
    }
  }
  r.intercept = a;
  r.length_slope = b;
  r.lc_win_rate = sigmoid(a);
  return r;
}

}  // namespace seqit::eval
