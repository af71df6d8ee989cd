// The atomic tasks, their kinds and phrasings, and the lexicon under them.
#include <gtest/gtest.h>

#include <set>

#include "synth/lexicon.h"
#include "synth/task.h"
#include "util/error.h"

using namespace seqit::synth;

TEST(SynthLexicon, LanguagesAreDisjointAndTranslationIsABijection) {
  ASSERT_EQ(english_words().size(), vellan_words().size());
  std::set<std::string> english(english_words().begin(), english_words().end());
  std::set<std::string> vellan(vellan_words().begin(), vellan_words().end());
  EXPECT_EQ(english.size(), english_words().size());
  EXPECT_EQ(vellan.size(), vellan_words().size());
  for (const std::string& w : vellan) EXPECT_EQ(english.count(w), 0u) << w;
  for (const std::string& w : english_words()) {
    std::optional<std::string> v = to_vellan(w);
    ASSERT_TRUE(v) << w;
    EXPECT_EQ(to_english(*v), w);
  }
  EXPECT_FALSE(to_vellan("zebra"));
  EXPECT_FALSE(to_english("cat"));
}

TEST(SynthLexicon, PinnedVellanWords) {
  // The lexicon is part of the world's data: a change here changes every data set. The values
  // were computed independently (a Python transcription of the rule in lexicon.cpp).
  EXPECT_EQ(english_words().front(), "cat");
  EXPECT_EQ(english_words().back(), "shy");
  EXPECT_EQ(english_words().size(), 66u);
  EXPECT_EQ(vellan_words()[0], "bafo");
  EXPECT_EQ(*to_vellan("red"), "vepe");
}

TEST(SynthLexicon, WorldTokensSplitMarksAndIgnoreSpacing) {
  EXPECT_EQ(
      split_world_tokens("  cat: red,dog :blue.  dog? "),
      (std::vector<std::string>{"cat", ":", "red", ",", "dog", ":", "blue", ".", "dog", "?"}));
  EXPECT_EQ(split_world_tokens("Step 1: a\nAnswer: b"),
            (std::vector<std::string>{"Step", "1", ":", "a", "\n", "Answer", ":", "b"}));
  EXPECT_EQ(canonical_text("  cat: red,dog :blue.  dog? "), "cat: red, dog: blue. dog?");
  EXPECT_EQ(canonical_text("red \t big   cat"), "red big cat");
}

TEST(SynthLexicon, ClassifiesEveryKindAndRejectsTheRest) {
  EXPECT_EQ(classify_text("red big cat"), Kind::kEnglish);
  EXPECT_EQ(classify_text(*to_vellan("red") + " " + *to_vellan("cat")), Kind::kForeign);
  EXPECT_EQ(classify_text("RED CAT"), Kind::kUpper);
  EXPECT_EQ(classify_text(seqit::synth::to_upper_ascii(*to_vellan("cat"))), Kind::kUpper);
  EXPECT_EQ(classify_text("3 12 0"), Kind::kNumbers);
  EXPECT_EQ(classify_text("cat: red, dog: blue. dog?"), Kind::kFacts);
  EXPECT_FALSE(classify_text(""));
  EXPECT_FALSE(classify_text("red zebra"));                  // unknown word
  EXPECT_FALSE(classify_text("red " + *to_vellan("cat")));   // mixed languages
  EXPECT_FALSE(classify_text("Red cat"));                    // mixed case
  EXPECT_FALSE(classify_text("07 3"));                       // leading zero
  EXPECT_FALSE(classify_text("100"));                        // above 99
  EXPECT_FALSE(classify_text("cat: red, cat: blue. cat?"));  // repeated key
  EXPECT_FALSE(classify_text("cat: red, dog: blue. fox?"));  // question not a key
  EXPECT_FALSE(classify_text("red: cat. red?"));             // key and value swapped
}

TEST(SynthLexicon, FactsRoundTrip) {
  Facts f{{{"cat", "red"}, {"dog", "blue"}, {"fox", "tall"}}, "dog"};
  EXPECT_EQ(render_facts(f), "cat: red, dog: blue, fox: tall. dog?");
  EXPECT_EQ(parse_facts("cat : red , dog : blue , fox : tall . dog ?"), f);
}

namespace {
std::string vellan(std::initializer_list<const char*> words) {
  std::string out;
  for (const char* w : words) out += (out.empty() ? "" : " ") + *to_vellan(w);
  return out;
}
}  // namespace

TEST(SynthTasks, EachTaskComputesItsOneRightOutput) {
  EXPECT_EQ(apply_task(TaskId::kReverse, "red big cat"), "cat big red");
  EXPECT_EQ(apply_task(TaskId::kReverse, "3 12 5"), "5 12 3");
  EXPECT_EQ(apply_task(TaskId::kUpper, "red big cat"), "RED BIG CAT");
  EXPECT_EQ(apply_task(TaskId::kSort, "red big cat"), "big cat red");
  EXPECT_EQ(apply_task(TaskId::kSort, "RED BIG CAT"), "BIG CAT RED");
  EXPECT_EQ(apply_task(TaskId::kCount, "red big cat"), "3");
  EXPECT_EQ(apply_task(TaskId::kCount, "3 12 5 0"), "4");
  EXPECT_EQ(apply_task(TaskId::kFirst, "red big cat"), "red");
  EXPECT_EQ(apply_task(TaskId::kLast, "red big cat"), "cat");
  EXPECT_EQ(apply_task(TaskId::kLast, "3 12 5"), "5");
  EXPECT_EQ(apply_task(TaskId::kSum, "3 12 5"), "20");
  EXPECT_EQ(apply_task(TaskId::kSum, "0 0"), "0");
  EXPECT_EQ(apply_task(TaskId::kMax, "3 12 5"), "12");
  EXPECT_EQ(apply_task(TaskId::kLookup, "cat: red, dog: blue, fox: tall. dog?"), "blue");
  EXPECT_EQ(apply_task(TaskId::kToVellan, "red cat"), vellan({"red", "cat"}));
  EXPECT_EQ(apply_task(TaskId::kToEnglish, vellan({"red", "cat"})), "red cat");
  EXPECT_EQ(apply_task(TaskId::kRepeat, "red  big cat"), "red big cat");
  EXPECT_EQ(apply_task(TaskId::kRepeat, "cat:red,dog:blue.dog?"), "cat: red, dog: blue. dog?");
  // Compounds are their two parts in order.
  EXPECT_EQ(apply_task(TaskId::kSortUpper, "red big cat"), "BIG CAT RED");
  EXPECT_EQ(apply_task(TaskId::kReverseUpper, "red big cat"), "CAT BIG RED");
  EXPECT_EQ(apply_task(TaskId::kSortFirst, "red big cat"), "big");
  EXPECT_EQ(apply_task(TaskId::kToVellanReverse, "red big cat"), vellan({"cat", "big", "red"}));
  EXPECT_EQ(apply_task(TaskId::kLookupToVellan, "cat: red, dog: blue. cat?"), vellan({"red"}));
}

TEST(SynthTasks, RejectInputOfAKindTheyDoNotAccept) {
  EXPECT_THROW(apply_task(TaskId::kSum, "red big cat"), seqit::Error);
  EXPECT_THROW(apply_task(TaskId::kUpper, "RED CAT"), seqit::Error);
  EXPECT_THROW(apply_task(TaskId::kSort, "3 1 2"), seqit::Error);
  EXPECT_THROW(apply_task(TaskId::kToVellan, vellan({"red"})), seqit::Error);
  EXPECT_THROW(apply_task(TaskId::kLookup, "red big cat"), seqit::Error);
  EXPECT_THROW(apply_task(TaskId::kReverse, "cat: red, dog: blue. dog?"), seqit::Error);
  EXPECT_THROW(apply_task(TaskId::kReverse, "zebra"), seqit::Error);
}

TEST(SynthTasks, KindTable) {
  EXPECT_EQ(output_kind(TaskId::kUpper, Kind::kForeign), Kind::kUpper);
  EXPECT_EQ(output_kind(TaskId::kCount, Kind::kUpper), Kind::kNumbers);
  EXPECT_EQ(output_kind(TaskId::kLookup, Kind::kFacts), Kind::kEnglish);
  EXPECT_EQ(output_kind(TaskId::kToVellan, Kind::kEnglish), Kind::kForeign);
  EXPECT_EQ(output_kind(TaskId::kToEnglish, Kind::kForeign), Kind::kEnglish);
  EXPECT_EQ(output_kind(TaskId::kRepeat, Kind::kFacts), Kind::kFacts);
  EXPECT_EQ(output_kind(TaskId::kReverse, Kind::kNumbers), Kind::kNumbers);
  EXPECT_FALSE(output_kind(TaskId::kUpper, Kind::kUpper));
  EXPECT_FALSE(output_kind(TaskId::kSort, Kind::kNumbers));
  EXPECT_FALSE(output_kind(TaskId::kToVellan, Kind::kUpper));
  EXPECT_EQ(output_kind(TaskId::kLookupToVellan, Kind::kFacts), Kind::kForeign);
  EXPECT_FALSE(output_kind(TaskId::kSortUpper, Kind::kUpper));
}

TEST(SynthTasks, GeneratedInputsAreOfTheirKindAndEveryTaskRunsOnThem) {
  Rng rng(7);
  for (int i = 0; i < 2000; ++i) {
    for (Kind k : kInputKinds) {
      std::string in = random_input(k, rng);
      ASSERT_EQ(classify_text(in), k) << in;
      ASSERT_EQ(canonical_text(in), in);
      for (TaskId t : all_tasks()) {
        if (!accepts(t, k)) continue;
        std::string out = apply_task(t, in);
        ASSERT_EQ(classify_text(out), output_kind(t, k)) << task_info(t).name << " on " << in;
      }
    }
    for (TaskId t : all_tasks()) ASSERT_TRUE(accepts(t, *classify_text(random_input_for(t, rng))));
  }
}

TEST(SynthTasks, PhrasingsAreUniqueUnpunctuatedAndSplitIntoTrainAndHeldOut) {
  std::set<std::string_view> seen;
  EXPECT_EQ(static_cast<int>(atomic_tasks().size()), kAtomicTaskCount);
  EXPECT_EQ(static_cast<int>(all_tasks().size()), kTaskCount);
  for (TaskId id : all_tasks()) {
    const TaskInfo& t = task_info(id);
    EXPECT_EQ(task_by_name(t.name), id);
    if (is_compound(id)) {
      EXPECT_EQ(t.parts.size(), 2u) << t.name;
      EXPECT_FALSE(is_held_out_pair(t.parts[0], t.parts[1])) << t.name;
      EXPECT_EQ(t.train_count, static_cast<int>(t.phrasings.size()));
    } else {
      EXPECT_TRUE(t.parts.empty());
      EXPECT_EQ(t.train_count, kTrainPhrasings) << t.name;
      EXPECT_EQ(static_cast<int>(t.phrasings.size()), kTrainPhrasings + kHeldOutPhrasings)
          << t.name;
      EXPECT_FALSE(is_held_out_phrasing(id, 0));
      EXPECT_TRUE(is_held_out_phrasing(id, kTrainPhrasings));
    }
    for (std::string_view p : t.phrasings) {
      EXPECT_TRUE(seen.insert(p).second) << "duplicate phrasing: " << p;
      for (char c : p) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == ' ' || c == '-') << p;
      // A phrasing starting with a connective word would be hard to tell from the connective.
      for (std::string_view w : {"first ", "then ", "finally ", "do ", "and ", "after "})
        EXPECT_NE(p.substr(0, w.size()), w) << p;
    }
  }
}

TEST(SynthTasks, HeldOutPhrasingsAreNewSentencesOfTrainingWords) {
  std::set<std::string> train_words;
  std::set<std::string_view> train_phrasings;
  for (TaskId id : all_tasks()) {
    const TaskInfo& t = task_info(id);
    for (int k = 0; k < t.train_count; ++k) {
      train_phrasings.insert(t.phrasings[static_cast<size_t>(k)]);
      for (std::string& w : split_world_tokens(t.phrasings[static_cast<size_t>(k)]))
        train_words.insert(w);
    }
  }
  for (TaskId id : atomic_tasks()) {
    const TaskInfo& t = task_info(id);
    for (size_t k = static_cast<size_t>(t.train_count); k < t.phrasings.size(); ++k) {
      EXPECT_EQ(train_phrasings.count(t.phrasings[k]), 0u);
      for (const std::string& w : split_world_tokens(t.phrasings[k]))
        EXPECT_EQ(train_words.count(w), 1u)
            << "'" << w << "' in held-out '" << t.phrasings[k] << "'";
    }
  }
}

TEST(SynthTasks, NoTaskFollowsItselfOrUndoesATranslation) {
  for (TaskId t : atomic_tasks()) EXPECT_FALSE(may_follow(t, t)) << task_info(t).name;
  EXPECT_FALSE(may_follow(TaskId::kToVellan, TaskId::kToEnglish));
  EXPECT_FALSE(may_follow(TaskId::kToEnglish, TaskId::kToVellan));
  EXPECT_TRUE(may_follow(TaskId::kToVellan, TaskId::kReverse));
  EXPECT_TRUE(may_follow(TaskId::kReverse, TaskId::kSort));
}

TEST(SynthTasks, HeldOutPairsAreTypeValidAtomicPairs) {
  EXPECT_EQ(held_out_pairs().size(), 8u);
  for (const auto& [a, b] : held_out_pairs()) {
    EXPECT_FALSE(is_compound(a));
    EXPECT_FALSE(is_compound(b));
    EXPECT_TRUE(may_follow(a, b));
    bool valid = false;
    for (Kind k : kInputKinds)
      if (auto mid = output_kind(a, k); mid && accepts(b, *mid)) valid = true;
    EXPECT_TRUE(valid) << task_info(a).name << " > " << task_info(b).name;
  }
  EXPECT_TRUE(is_held_out_pair(TaskId::kUpper, TaskId::kReverse));
  EXPECT_FALSE(is_held_out_pair(TaskId::kReverse, TaskId::kUpper));
}

TEST(SynthRng, SplitMix64ReferenceValues) {
  // SplitMix64 from seed 0 (the reference sequence of Vigna's splitmix64.c).
  Rng rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(rng.next(), 0x06C45D188009454Full);
  Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.below(7), b.below(7));
  std::vector<int> hits(7);
  Rng c(1);
  for (int i = 0; i < 7000; ++i) ++hits[c.below(7)];
  for (int h : hits) EXPECT_NEAR(h, 1000, 150);
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
}
