// Metrics against hand-computed values, published examples and closed forms.
#include "eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "util/error.h"

namespace seqit::eval {
namespace {

// ---- Numbers
// --------------------------------------------------------------------------------------------

TEST(ParseNumber, NormalisesTheWaysAnswersAreWritten) {
  EXPECT_EQ(parse_number("$29.00"), 29.0);
  EXPECT_EQ(parse_number("1,000"), 1000.0);
  EXPECT_EQ(parse_number("1,000,000"), 1e6);
  EXPECT_EQ(parse_number("-3.50"), -3.5);
  EXPECT_EQ(parse_number("12."), 12.0);
  EXPECT_EQ(parse_number(".5"), 0.5);
  EXPECT_EQ(parse_number("-$4"), -4.0);
  EXPECT_EQ(parse_number("  42 \n"), 42.0);
}

TEST(ParseNumber, RejectsWhatIsNotOneNumber) {
  EXPECT_EQ(parse_number(""), std::nullopt);
  EXPECT_EQ(parse_number("abc"), std::nullopt);
  EXPECT_EQ(parse_number("1,00"), std::nullopt);  // not a thousands group
  EXPECT_EQ(parse_number("12 apples"), std::nullopt);
  EXPECT_EQ(parse_number("$"), std::nullopt);
  EXPECT_EQ(parse_number("-"), std::nullopt);
}

TEST(ExtractLastNumber, TakesTheLastNumberAnywhere) {
  EXPECT_EQ(
      extract_last_number("She eats 3 and bakes 4, so 16 - 3 - 4 = 9 eggs earn $18 every day."),
      18.0);
  EXPECT_EQ(extract_last_number("The total is 1,234.5 dollars"), 1234.5);
  EXPECT_EQ(extract_last_number("5-3"), 3.0);  // a hyphen after a digit is not a sign
  EXPECT_EQ(extract_last_number("x = -7"), -7.0);
  EXPECT_EQ(extract_last_number("so the result is 12."), 12.0);
  EXPECT_EQ(extract_last_number("values 1,2,3"), 3.0);  // a list, not thousands
  EXPECT_EQ(extract_last_number("no digits here"), std::nullopt);
}

TEST(ExtractCuedNumber, ReadsOnlyAfterAnExplicitCue) {
  EXPECT_EQ(extract_cued_number("Natalia sold 48/2 = 24 clips in May.\n#### 72"), 72.0);
  EXPECT_EQ(extract_cued_number("The Answer is: $1,000."), 1000.0);
  EXPECT_EQ(extract_cued_number("THE ANSWER IS 5\nthen I counted 7 more"),
            5.0);  // not the last number
  EXPECT_EQ(extract_cued_number("The answer is 3. No wait, the answer is 4"), 4.0);  // the last cue
  EXPECT_EQ(extract_cued_number("The answer is **18**"), 18.0);
  EXPECT_EQ(extract_cued_number("the answer is -2.5 degrees"), -2.5);
  EXPECT_EQ(extract_cued_number("I think it is 42"), std::nullopt);
  EXPECT_EQ(extract_cued_number("The answer is that 5 apples remain"), std::nullopt);
  EXPECT_EQ(extract_cued_number("####"), std::nullopt);
}

TEST(NumbersEqual, ComparesValuesNotSpellings) {
  EXPECT_TRUE(numbers_equal(*parse_number("$29.00"), 29));
  EXPECT_TRUE(numbers_equal(0.1 + 0.2, 0.3));
  EXPECT_FALSE(numbers_equal(1000, 1001));
  EXPECT_FALSE(numbers_equal(0.5, -0.5));
}

// ---- BBH and multiple choice
// ------------------------------------------------------------------------------

TEST(ExtractBbhAnswer, TextAfterTheLastCueUpToTheSentenceEnd) {
  EXPECT_EQ(extract_bbh_answer("Let's think step by step. So the answer is (B)."), "(B)");
  EXPECT_EQ(extract_bbh_answer("the answer is 3.5."), "3.5");
  EXPECT_EQ(extract_bbh_answer("So the answer is True\nExtra line"), "True");
  EXPECT_EQ(extract_bbh_answer("So the answer is valid. Wait, the answer is invalid. Done."),
            "invalid");
  EXPECT_EQ(extract_bbh_answer("The answer is **No**."), "No");
  EXPECT_EQ(extract_bbh_answer("no cue at all."), std::nullopt);
  EXPECT_EQ(extract_bbh_answer("the answer is ."), std::nullopt);
}

TEST(ExtractChoice, StrictNeedsACue) {
  EXPECT_EQ(extract_choice_strict("Reasoning... The answer is (C).", 4), 'C');
  EXPECT_EQ(extract_choice_strict("Answer: B", 4), 'B');
  EXPECT_EQ(extract_choice_strict("**Answer:** D.", 4), 'D');
  EXPECT_EQ(extract_choice_strict("The answer is E", 4), std::nullopt);  // not an option
  EXPECT_EQ(extract_choice_strict("The answer is Because", 4),
            std::nullopt);  // a word, not a letter
  EXPECT_EQ(extract_choice_strict("I pick (B)", 4), std::nullopt);
  EXPECT_EQ(extract_choice_strict("answer: A, no wait, Answer: C", 4), 'C');
  EXPECT_THROW(extract_choice_strict("Answer: A", 0), Error);
}

TEST(ExtractChoice, FlexibleFallsBackToLettersAnywhere) {
  EXPECT_EQ(extract_choice_flexible("Answer: A", 4), 'A');
  EXPECT_EQ(extract_choice_flexible("(A) is wrong but (C) is right", 4), 'C');
  EXPECT_EQ(extract_choice_flexible("I am sure.\nB. Paris", 4), 'B');
  EXPECT_EQ(extract_choice_flexible("I pick (E)", 4), std::nullopt);
  EXPECT_EQ(extract_choice_flexible("No idea.", 4), std::nullopt);
}

// ---- SQuAD
// -------------------------------------------------------------------------------------------------

TEST(Squad, NormalisationFollowsTheOfficialScript) {
  EXPECT_EQ(normalize_squad_answer("The  Cat's, hat!"), "cats hat");
  EXPECT_EQ(normalize_squad_answer("  An apple a day\t"), "apple day");
  EXPECT_EQ(normalize_squad_answer("theater"), "theater");  // articles only as whole words
  EXPECT_EQ(normalize_squad_answer("..."), "");
}

TEST(Squad, ExactMatchAndF1TakeTheBestGold) {
  const std::vector<std::string> golds = {"a cat sat", "Denver Broncos"};
  EXPECT_EQ(squad_exact_match("the Denver broncos.", golds), 1.0);
  EXPECT_EQ(squad_exact_match("Broncos", golds), 0.0);
  // "cat sat on mat" vs "cat sat": 2 shared tokens, P = 2/4, R = 2/2, F1 = 2/3.
  EXPECT_NEAR(squad_f1("the cat sat on the mat", golds), 2.0 / 3.0, 1e-12);
  // "broncos" vs "denver broncos": P = 1, R = 1/2, F1 = 2/3; repeated tokens count once each.
  EXPECT_NEAR(squad_f1("Broncos", golds), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(squad_f1("broncos broncos", std::vector<std::string>{"broncos"}), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(squad_f1("nothing shared", golds), 0.0);
  EXPECT_EQ(squad_f1("the", std::vector<std::string>{"a"}), 1.0);  // both empty after normalising
  EXPECT_THROW(squad_f1("x", std::vector<std::string>{}), Error);
}

// ---- ROUGE-L
// -------------------------------------------------------------------------------------------------

TEST(Rouge, TokensLikeRougeScore) {
  EXPECT_EQ(rouge_tokens("Hello, World! It's 2024."),
            (std::vector<std::string>{"hello", "world", "it", "s", "2024"}));
  EXPECT_TRUE(rouge_tokens("!!! ...").empty());
}

TEST(Rouge, MatchesTheRougeScoreReadmeExample) {
  // rouge_scorer.RougeScorer(['rougeL']).score('The quick brown fox jumps over the lazy dog',
  //                                             'The quick brown dog jumps on the log.')
  // gives precision 0.625, recall 0.5556, fmeasure 0.5882 (LCS "the quick brown jumps the" = 5).
  const RougeScore s = rouge_l("The quick brown dog jumps on the log.",
                               "The quick brown fox jumps over the lazy dog");
  EXPECT_NEAR(s.precision, 5.0 / 8.0, 1e-12);
  EXPECT_NEAR(s.recall, 5.0 / 9.0, 1e-12);
  EXPECT_NEAR(s.f1, 0.5882352941176471, 1e-12);
}

TEST(Rouge, EdgeCases) {
  EXPECT_NEAR(rouge_l("a b c", "a b c").f1, 1.0, 1e-12);
  EXPECT_EQ(rouge_l("x y", "a b").f1, 0.0);
  EXPECT_EQ(rouge_l("", "a b").f1, 0.0);
  // Order matters: the LCS of "c b a" and "a b c" is one token.
  EXPECT_NEAR(rouge_l("c b a", "a b c").f1, 1.0 / 3.0, 1e-12);
}

// ---- pass@k
// ------------------------------------------------------------------------------------------------

// C(n, k) exactly for the small n used here (Pascal's triangle in doubles is exact below 2^53).
double choose(int n, int k) {
  std::vector<std::vector<double>> c(n + 1, std::vector<double>(n + 1, 0));
  for (int i = 0; i <= n; ++i) {
    c[i][0] = 1;
    for (int j = 1; j <= i; ++j) c[i][j] = c[i - 1][j - 1] + c[i - 1][j];
  }
  return k > n ? 0 : c[n][k];
}

TEST(PassAtK, EqualsTheClosedForm) {
  for (auto [n, c, k] : std::vector<std::tuple<int, int, int>>{{10, 3, 1},
                                                               {10, 3, 5},
                                                               {20, 0, 5},
                                                               {5, 5, 1},
                                                               {50, 13, 10},
                                                               {7, 2, 6},
                                                               {30, 1, 30},
                                                               {40, 17, 3}}) {
    const double expected = 1.0 - choose(n - c, k) / choose(n, k);
    EXPECT_NEAR(pass_at_k(n, c, k), expected, 1e-12) << "n=" << n << " c=" << c << " k=" << k;
  }
  EXPECT_NEAR(pass_at_k(10, 3, 1), 0.3, 1e-12);  // pass@1 is the fraction correct
  EXPECT_EQ(pass_at_k(7, 2, 6), 1.0);  // only 5 wrong samples: every 6-subset has a right one
}

TEST(PassAtK, StaysAccurateForLargeN) {
  // C(1000, 100) overflows doubles; the product form does not. 1 - C(990,100)/C(1000,100) computed
  // as a product of 10 ratios: prod_{i=0..9} (900 - i) / (1000 - i).
  double ratio = 1;
  for (int i = 0; i < 10; ++i) ratio *= (900.0 - i) / (1000.0 - i);
  EXPECT_NEAR(pass_at_k(1000, 10, 100), 1 - ratio, 1e-12);
}

TEST(PassAtK, RejectsImpossibleCounts) {
  EXPECT_THROW(pass_at_k(0, 0, 1), Error);
  EXPECT_THROW(pass_at_k(10, 11, 1), Error);
  EXPECT_THROW(pass_at_k(10, 3, 11), Error);
  EXPECT_THROW(pass_at_k(10, -1, 1), Error);
}

// ---- Bootstrap
// ----------------------------------------------------------------------------------------------

TEST(Bootstrap, BernoulliHalfWidthMatchesTheNormalApproximation) {
  std::vector<double> scores(400);
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = (i % 2 == 0) ? 1.0 : 0.0;
  const ConfidenceInterval ci =
      bootstrap_mean_ci(scores, {.resamples = 4000, .confidence = 0.95, .seed = 1});
  EXPECT_DOUBLE_EQ(ci.estimate, 0.5);
  // 1.96 * sqrt(0.25 / 400) = 0.049; the bootstrap quantiles with 4000 resamples scatter by ~0.0015
  // and move in steps of 1/400, so 0.005 is about three standard errors.
  EXPECT_NEAR((ci.upper - ci.lower) / 2, 1.96 * std::sqrt(0.25 / 400), 0.005);
  EXPECT_NEAR((ci.upper + ci.lower) / 2, 0.5, 0.005);
}

TEST(Bootstrap, IsDeterministicForASeed) {
  std::vector<double> scores = {1, 0, 0, 1, 1, 1, 0, 1, 0.5, 1};
  const auto a = bootstrap_mean_ci(scores, {.resamples = 500, .seed = 7});
  const auto b = bootstrap_mean_ci(scores, {.resamples = 500, .seed = 7});
  const auto c = bootstrap_mean_ci(scores, {.resamples = 500, .seed = 8});
  EXPECT_EQ(a.lower, b.lower);
  EXPECT_EQ(a.upper, b.upper);
  EXPECT_TRUE(a.lower != c.lower || a.upper != c.upper);
  EXPECT_LE(a.lower, a.estimate);
  EXPECT_GE(a.upper, a.estimate);
}

TEST(Bootstrap, PairedDifferenceUsesTheItemPairs) {
  // A constant improvement of 0.1 on every item: every resample gives exactly 0.1.
  std::vector<double> base(50), better(50);
  for (size_t i = 0; i < base.size(); ++i)
    base[i] = 0.3 + 0.01 * static_cast<double>(i % 7), better[i] = base[i] + 0.1;
  const auto constant = paired_bootstrap_diff_ci(better, base, {.resamples = 1000, .seed = 3});
  EXPECT_NEAR(constant.estimate, 0.1, 1e-12);
  EXPECT_NEAR(constant.lower, 0.1, 1e-12);
  EXPECT_NEAR(constant.upper, 0.1, 1e-12);

  // 400 items, half right for B; A fixes 40 of B's wrong ones. Per-item differences are 40 ones and
  // 360 zeros: half-width 1.96 * sqrt(0.1 * 0.9 / 400) = 0.0294, much narrower than the 0.069 an
  // unpaired comparison of two 50% accuracies would give.
  std::vector<double> a(400), b(400);
  for (size_t i = 0; i < 400; ++i) {
    b[i] = (i % 2 == 0) ? 1 : 0;
    a[i] = (b[i] == 1 || i % 10 == 1) ? 1 : 0;
  }
  const auto ci = paired_bootstrap_diff_ci(a, b, {.resamples = 4000, .seed = 11});
  EXPECT_NEAR(ci.estimate, 0.1, 1e-12);
  EXPECT_NEAR((ci.upper - ci.lower) / 2, 1.96 * std::sqrt(0.1 * 0.9 / 400), 0.004);
  EXPECT_GT(ci.lower, 0.05);
}

TEST(Bootstrap, RejectsBadInput) {
  EXPECT_THROW(bootstrap_mean_ci(std::vector<double>{}), Error);
  EXPECT_THROW(bootstrap_mean_ci(std::vector<double>{1.0}, {.resamples = 0}), Error);
  EXPECT_THROW(bootstrap_mean_ci(std::vector<double>{1.0}, {.confidence = 1.0}), Error);
  EXPECT_THROW(paired_bootstrap_diff_ci(std::vector<double>{1, 2}, std::vector<double>{1}), Error);
}

// ---- Length-controlled win rate
// ----------------------------------------------------------------------------

TEST(LengthControlledWinRate, LongerAlwaysWinsGivesAboutHalf) {
  // The model is longer on 80 items and wins exactly those; shorter on 20 and loses them. The raw
  // win rate rewards length (0.8); at zero length difference the fit is a coin flip.
  std::vector<double> pref, diff;
  for (int d = -20; d <= 80; ++d) {
    if (d == 0) continue;
    diff.push_back(d);
    pref.push_back(d > 0 ? 1 : 0);
  }
  const auto r = length_controlled_win_rate(pref, diff);
  EXPECT_DOUBLE_EQ(r.raw_win_rate, 0.8);
  EXPECT_NEAR(r.lc_win_rate, 0.5, 0.02);
  EXPECT_GT(r.length_slope, 5);  // a strong length effect was found
  EXPECT_EQ(r.items, 100);
}

TEST(LengthControlledWinRate, NoLengthEffectKeepsTheRawRate) {
  // Wins on 7 items in 10 whatever the length; lengths spread independently of that pattern.
  std::vector<double> pref, diff;
  for (int i = 0; i < 200; ++i) {
    pref.push_back(i % 10 < 7 ? 1 : 0);
    diff.push_back(((i * 37) % 101) - 50);
  }
  const auto r = length_controlled_win_rate(pref, diff);
  EXPECT_DOUBLE_EQ(r.raw_win_rate, 0.7);
  EXPECT_NEAR(r.lc_win_rate, 0.7, 0.01);
}

TEST(LengthControlledWinRate, TiesAreHalfWinsAndSameLengthIsRaw) {
  // With no length differences at all z = 0, so LC is the (ridge-shrunk) raw rate: 0.5*l2*a^2 moves
  // the fit by about l2/n.
  const std::vector<double> pref = {1, 0.5, 0.5, 1, 0, 1, 1, 0.5};
  const std::vector<double> diff(pref.size(), 0.0);
  const auto r = length_controlled_win_rate(pref, diff);
  EXPECT_DOUBLE_EQ(r.raw_win_rate, 5.5 / 8);
  EXPECT_NEAR(r.lc_win_rate, 5.5 / 8, 0.002);
  EXPECT_EQ(r.length_slope, 0);
}

TEST(LengthControlledWinRate, RejectsBadInput) {
  EXPECT_THROW(length_controlled_win_rate(std::vector<double>{}, std::vector<double>{}), Error);
  EXPECT_THROW(length_controlled_win_rate(std::vector<double>{1, 0}, std::vector<double>{1}),
               Error);
  EXPECT_THROW(length_controlled_win_rate(std::vector<double>{1.5}, std::vector<double>{1}), Error);
}

}  // namespace
}  // namespace seqit::eval
