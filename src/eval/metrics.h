// Task metrics: pulling an answer out of a model's free text and scoring it against the gold one.
// Every function here is pure (no I/O, no global state; the bootstrap takes its seed), so a report
// can be recomputed from the stored generations and gives the same numbers every time.
//
// What each metric follows, so that our numbers can be compared with published ones:
//   numbers        GSM8K/MGSM as lm-evaluation-harness scores them: a "strict" answer after an
//   explicit
//                  cue (`#### 42`, `The answer is 42`) and a "flexible" one (the last number in the
//                  text);
//   BBH            the answer is the text after the last "the answer is", up to the sentence's end;
//   choices        MMLU/ARC letters: `(B)`, `B.`, `Answer: B`;
//   SQuAD/XQuAD    the official v1.1 script's normalisation, exact match and token F1;
//   ROUGE-L        Google's rouge-score package with its default tokenizer and no stemming;
//   pass@k         the unbiased estimator of Chen et al. (2021);
//   bootstrap      percentile intervals from a seeded resampling;
//   LC win rate    the length-controlled win rate idea of AlpacaEval 2 (a logistic model of the
//                  preference on the length difference, read at zero difference).
// A missing answer is std::nullopt, never a number that happens to be wrong.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace seqit::eval {

// ---- Numbers (GSM8K, MGSM)
// -------------------------------------------------------------------------

// The value of one number as written in an answer: "$29.00" = 29, "1,000" = 1000, "-3.50" = -3.5,
// "12." = 12, ".5" = 0.5. Thousands separators count only in groups of three ("1,000,000"); the
// whole of `token` (after trimming whitespace) must be the number, else std::nullopt.
std::optional<double> parse_number(std::string_view token);

// Flexible extraction: the last number anywhere in `text` (same forms as parse_number; a '-' is a
// sign only when it does not follow a letter or digit, so "5-3" holds 5 and 3).
std::optional<double> extract_last_number(std::string_view text);

// Strict extraction: the number right after the last explicit answer cue, case-insensitive: GSM8K's
// `#### N`, `The answer is N`, `The answer is: N` (markdown bold and a '$' between cue and number
// are skipped). std::nullopt when no cue is followed by a number.
std::optional<double> extract_cued_number(std::string_view text);

// Equality of two normalised numbers: |a - b| <= 1e-6 * max(1, |a|, |b|), so 29 == 29.00 and
// 0.1 + 0.2 == 0.3, but 1000 != 1001.
bool numbers_equal(double a, double b);

// ---- BBH and multiple choice
// -------------------------------------------------------------------------

// BBH's `the answer is (.*?)\.` (case-insensitive, the last occurrence): the text after the cue up
// to the first '.' that ends a sentence (followed by whitespace or the end) or the end of the line,
// trimmed of whitespace and markdown bold. "The answer is 3.5." gives "3.5"; "the answer is (B)."
// gives "(B)". std::nullopt without a cue or with nothing after it.
std::optional<std::string> extract_bbh_answer(std::string_view text);

// Multiple-choice letters among the first `options` letters of the alphabet (options in 1..26).
// Strict: the letter right after the last cue ("the answer is", "answer:"), written `B`, `(B)` or
// `B.`, case-sensitive for the letter. Flexible: the strict answer if there is one; otherwise the
// last
// `(B)` anywhere; otherwise the last `B.` or `B)` that starts a line.
std::optional<char> extract_choice_strict(std::string_view text, int options);
std::optional<char> extract_choice_flexible(std::string_view text, int options);

// ---- SQuAD-style answers (XQuAD)
// ---------------------------------------------------------------------

// The SQuAD v1.1 normalisation: lower-case (ASCII letters only; other bytes are kept as they are),
// remove ASCII punctuation (Python's string.punctuation), remove the words a/an/the, collapse runs
// of whitespace to one space and trim.
std::string normalize_squad_answer(std::string_view text);

// 1 when the normalised prediction equals the normalised form of any gold answer, else 0.
double squad_exact_match(std::string_view prediction, std::span<const std::string> golds);

// Token F1 between the normalised prediction and gold (bag-of-words overlap), the maximum over the
// golds. When both normalise to no tokens the F1 is 1; when only one does it is 0. Throws
// seqit::Error when `golds` is empty.
double squad_f1(std::string_view prediction, std::span<const std::string> golds);

// ---- ROUGE-L
// -------------------------------------------------------------------------------------------

struct RougeScore {
  double precision = 0, recall = 0, f1 = 0;
};
// rouge-score's default tokens: lower-case, every character outside [a-z0-9] becomes a space,
// split.
std::vector<std::string> rouge_tokens(std::string_view text);
// ROUGE-L: the longest common subsequence of the tokens; precision = LCS / |prediction|,
// recall = LCS / |reference|, F1 = 2PR / (P + R). All zero when either side has no tokens.
RougeScore rouge_l(std::string_view prediction, std::string_view reference);

// ---- pass@k
// --------------------------------------------------------------------------------------------

// The unbiased pass@k for n samples of which c are correct: 1 - C(n-c, k) / C(n, k), computed as
// 1 - prod_{i=n-c+1..n} (1 - k/i), which neither overflows nor cancels. Throws seqit::Error unless
// n >= 1, 0 <= c <= n and 1 <= k <= n.
double pass_at_k(int64_t n, int64_t c, int64_t k);

// ---- Bootstrap confidence intervals
// --------------------------------------------------------------------

struct ConfidenceInterval {
  double estimate = 0;  // the statistic on the original sample
  double lower = 0, upper = 0;
};
struct BootstrapOptions {
  int resamples = 2000;
  double confidence =
      0.95;           // the interval covers the middle `confidence` of the resampled statistics
  uint64_t seed = 0;  // SplitMix64 seed: the same inputs and seed give the same interval
};
// The mean of `scores` with a percentile bootstrap interval: `resamples` samples of the same size
// drawn with replacement; the bounds are the (1-confidence)/2 and (1+confidence)/2 quantiles of
// their means, interpolated linearly between ranks (numpy's default). Throws seqit::Error on an
// empty input or invalid options.
ConfidenceInterval bootstrap_mean_ci(std::span<const double> scores,
                                     const BootstrapOptions& options = {});
// The difference of means, mean(a) - mean(b), for two systems scored on the same items (a[i] and
// b[i] belong to item i): each resample draws items, keeping the pairs together, so the interval
// reflects how the systems differ item by item. Throws seqit::Error when the sizes differ or are
// zero.
ConfidenceInterval paired_bootstrap_diff_ci(std::span<const double> a, std::span<const double> b,
                                            const BootstrapOptions& options = {});

// ---- Length-controlled win rate (AlpacaEval 2 idea)
// ------------------------------------------------------

struct LengthControlledWinRate {
  double raw_win_rate = 0;  // mean preference (win 1, tie 0.5, loss 0)
  double lc_win_rate = 0;   // sigmoid(intercept): the predicted win rate at zero length difference
  double intercept = 0;     // a in p(win) = sigmoid(a + b * z)
  double length_slope = 0;  // b
  double length_scale = 0;  // the standard deviation used to scale the length differences
  int64_t items = 0;
  int iterations = 0;  // Newton steps taken
};
struct LengthControlOptions {
  double l2 = 1e-2;  // ridge penalty (lambda/2 * (a^2 + b^2)): finite fits when the data separate
  int max_iterations = 100;
};
// Fits p(win_i) = sigmoid(a + b * z_i) with z_i = tanh(d_i / s), d_i = length(model) -
// length(reference) and s the sample standard deviation of the d_i (not centred: z = 0 must mean
// "same length"); the tanh bounds the influence of a few very long answers, as AlpacaEval 2 does.
// Preferences are soft labels (a tie counts as half a win) in the Bernoulli log-likelihood;
// Newton's method with a step halving line search on the penalised likelihood. Throws seqit::Error
// on empty or mismatched inputs or a preference outside [0, 1].
LengthControlledWinRate length_controlled_win_rate(std::span<const double> preferences,
                                                   std::span<const double> length_differences,
                                                   const LengthControlOptions& options = {});

}  // namespace seqit::eval
