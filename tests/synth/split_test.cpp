// The generated data sets: what training sees, what evaluation holds out, and determinism.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "synth/split.h"
#include "synth/vocabulary.h"
#include "util/error.h"

using namespace seqit::synth;

namespace {
std::set<std::pair<TaskId, TaskId>> adjacent_pairs(const std::vector<Item>& items) {
  std::set<std::pair<TaskId, TaskId>> out;
  for (const Item& item : items) {
    std::vector<TaskId> seq = atomic_sequence(item.chain);
    for (size_t i = 1; i < seq.size(); ++i) out.insert({seq[i - 1], seq[i]});
  }
  return out;
}
}  // namespace

TEST(SynthSplit, ItItemsAreSingleTrainingTasks) {
  std::vector<Item> items = make_it_items(1, 4000);
  ASSERT_EQ(items.size(), 4000u);
  EXPECT_EQ(items[17].id, "synth-it-000017");
  std::set<TaskId> tasks;
  int compounds = 0;
  for (const Item& item : items) {
    ASSERT_EQ(item.chain.steps.size(), 1u);
    const Step& s = item.chain.steps[0];
    ASSERT_FALSE(is_held_out_phrasing(s.task, s.phrasing)) << item.instruction;
    ASSERT_FALSE(is_eval_input(item.input)) << item.input;
    ASSERT_EQ(item.instruction, render_instruction(item.chain));
    ASSERT_EQ(item.response, reference_response(item.chain, item.input));
    ASSERT_EQ(item.response.substr(0, 8), "Answer: ");
    tasks.insert(s.task);
    compounds += is_compound(s.task);
  }
  EXPECT_EQ(tasks.size(), static_cast<size_t>(kTaskCount));
  EXPECT_NEAR(compounds / 4000.0, 0.2, 0.03);  // sd 0.0063
}

TEST(SynthSplit, EvalItemsHoldOutPhrasingsPairsInputsAndLength) {
  std::vector<Item> eval = make_eval_items(2, 300);
  ASSERT_EQ(eval.size(), 1500u);
  std::map<size_t, int> per_length;
  for (const Item& item : eval) {
    per_length[item.chain.steps.size()]++;
    ASSERT_TRUE(is_eval_input(item.input)) << item.input;
    ASSERT_TRUE(is_type_valid(item.chain, *classify_text(item.input)));
    for (const Step& s : item.chain.steps) {
      ASSERT_FALSE(is_compound(s.task));
      ASSERT_TRUE(is_held_out_phrasing(s.task, s.phrasing)) << item.instruction;
    }
    if (item.chain.steps.size() >= 2) {
      ASSERT_TRUE(has_held_out_pair(item.chain)) << describe(item.chain);
    }
    ASSERT_EQ(parse_instruction(item.instruction), item.chain);
  }
  EXPECT_EQ(per_length, (std::map<size_t, int>{{1, 300}, {2, 300}, {3, 300}, {4, 300}, {5, 300}}));
  EXPECT_EQ(eval.front().id, "synth-eval-1-00000");
  EXPECT_EQ(eval.back().id, "synth-eval-5-00299");
  // Every held-out pair is actually tested.
  std::set<std::pair<TaskId, TaskId>> pairs = adjacent_pairs(eval);
  for (const auto& p : held_out_pairs()) EXPECT_TRUE(pairs.count(p)) << task_info(p.first).name;
}

TEST(SynthSplit, TrainingNeverSeesWhatEvaluationHoldsOut) {
  std::vector<Item> train = make_train_chain_items(3, 5000);
  std::vector<Item> it = make_it_items(3, 5000);
  std::vector<Item> eval = make_eval_items(3, 200);
  std::set<std::string> train_inputs, train_instructions;
  for (const std::vector<Item>* set : {&train, &it}) {
    for (const Item& item : *set) {
      ASSERT_LE(static_cast<int>(item.chain.steps.size()), kMaxTrainSteps);
      ASSERT_FALSE(has_held_out_pair(item.chain)) << describe(item.chain);
      train_inputs.insert(item.input);
      train_instructions.insert(item.instruction);
    }
  }
  std::set<std::pair<TaskId, TaskId>> train_pairs = adjacent_pairs(train);
  for (const auto& p : held_out_pairs()) EXPECT_EQ(train_pairs.count(p), 0u);
  for (const Item& item : eval) {
    EXPECT_EQ(train_inputs.count(item.input), 0u) << item.input;
    EXPECT_EQ(train_instructions.count(item.instruction), 0u) << item.instruction;
  }
  // Training chains cover lengths 1..3 and many combinations, all but the held-out ones.
  std::map<size_t, int> lengths;
  for (const Item& item : train) lengths[item.chain.steps.size()]++;
  EXPECT_EQ(lengths.size(), 3u);
  EXPECT_GT(train_pairs.size(), 40u);
}

TEST(SynthSplit, HeldOutInputRuleIsAFixedHash) {
  EXPECT_EQ(is_eval_input("red big cat"), fnv1a64("red big cat") % 5 == 0);
  EXPECT_EQ(is_eval_input("red   big cat "), is_eval_input("red big cat"));
  Rng rng(8);
  int eval = 0;
  for (int i = 0; i < 5000; ++i) eval += is_eval_input(random_input(Kind::kEnglish, rng));
  EXPECT_NEAR(eval / 5000.0, 0.2, 0.03);
  for (int i = 0; i < 200; ++i) {
    EXPECT_TRUE(is_eval_input(random_split_input(Kind::kNumbers, Split::kEval, rng)));
    EXPECT_FALSE(is_eval_input(random_split_input(Kind::kFacts, Split::kTrain, rng)));
  }
}

TEST(SynthSplit, SameSeedSameItemsOtherSeedOtherItems) {
  EXPECT_EQ(make_it_items(10, 200), make_it_items(10, 200));
  EXPECT_EQ(make_eval_items(10, 40), make_eval_items(10, 40));
  EXPECT_EQ(make_train_chain_items(10, 200), make_train_chain_items(10, 200));
  EXPECT_NE(make_it_items(10, 200), make_it_items(11, 200));
  EXPECT_NE(make_eval_items(10, 40), make_eval_items(11, 40));
  EXPECT_NE(make_train_chain_items(10, 200), make_train_chain_items(11, 200));
  // A longer run starts with the shorter one.
  std::vector<Item> more = make_it_items(10, 300);
  more.resize(200);
  EXPECT_EQ(more, make_it_items(10, 200));
}

TEST(SynthSplit, PinnedFirstItems) {
  // A regression pin, recorded from this implementation: the generators draw only from SplitMix64
  // (pinned against its reference values in SynthRng), so these exact items come out on every
  // machine and standard library; a change here means every earlier study's data changes too.
  std::vector<Item> it = make_it_items(0, 1);
  std::vector<Item> eval = make_eval_items(0, 1, 2);
  EXPECT_EQ(it[0].instruction + "|" + it[0].input + "|" + it[0].response,
            "Tell me the word count.|kide bafo done nube vavu tika difi|Answer: 7");
  EXPECT_EQ(
      eval[1].instruction + "|" + eval[1].input + "|" + eval[1].response,
      "Write every letter in upper case, and after that write the words in reverse order.|emu new "
      "tree bat|Step 1: EMU NEW TREE BAT\nAnswer: BAT TREE NEW EMU");
}

TEST(SynthSplit, BadArgumentsAreErrors) {
  EXPECT_THROW(make_train_chain_items(1, 10, 4), seqit::Error);
  EXPECT_THROW(make_eval_items(1, 10, 6), seqit::Error);
  Rng rng(1);
  EXPECT_THROW(random_chain(Kind::kEnglish, 0, Split::kTrain, rng), seqit::Error);
  EXPECT_THROW(random_input(Kind::kUpper, rng), seqit::Error);
}

TEST(SynthSplit, ToInstructionRecord) {
  Item item = make_eval_items(4, 1, 3)[2];
  seqit::data::Instruction r = to_instruction(item);
  EXPECT_EQ(r.id, "synth-eval-3-00000");
  EXPECT_EQ(r.instruction, item.instruction);
  EXPECT_EQ(r.input, item.input);
  EXPECT_EQ(r.output, item.response);
  EXPECT_EQ(r.meta.get_string("synth_chain"), describe(item.chain));
  EXPECT_EQ(r.meta.get_integer("synth_steps"), 3);
}

TEST(SynthVocabulary, CoversEveryGeneratedTokenAndIsSmall) {
  const std::vector<std::string>& vocab = world_vocabulary();
  std::set<std::string> v(vocab.begin(), vocab.end());
  EXPECT_EQ(v.size(), vocab.size());
  EXPECT_TRUE(std::is_sorted(vocab.begin(), vocab.end()));
  EXPECT_LT(vocab.size(), 1000u);
  std::set<std::string> used;
  auto check = [&](const std::string& text) {
    for (const std::string& t : split_world_tokens(text)) {
      ASSERT_TRUE(v.count(t)) << "'" << t << "' in: " << text;
      used.insert(t);
    }
  };
  for (const auto& set :
       {make_it_items(5, 3000), make_train_chain_items(5, 3000), make_eval_items(5, 300)}) {
    for (const Item& item : set) {
      check(item.instruction);
      check(item.input);
      check(item.response);
    }
  }
  for (const char* t :
       {"Step", "Answer", "\n", "First", "Do", "Finally", "vellan", "CAT", "99", "?"})
    EXPECT_TRUE(v.count(t)) << t;
  EXPECT_FALSE(v.count("Cat"));
  EXPECT_FALSE(v.count("100"));
  // Nearly all of the vocabulary is reached by a few thousand items.
  EXPECT_GT(used.size(), vocab.size() * 8 / 10);
}

// A smaller input shape (the study's easier worlds): every generated input keeps to it, on both
// sides of the split, and the default shape is the world's (the pinned items above).
TEST(SynthSplit, InputShapeBoundsEveryInput) {
  InputShape shape;
  shape.lexicon = 12;
  shape.min_words = 2, shape.max_words = 3;
  shape.min_numbers = 2, shape.max_numbers = 2;
  shape.max_number = 9;
  shape.min_facts = 2, shape.max_facts = 2;
  const std::set<std::string> english(english_words().begin(), english_words().begin() + 12);
  std::set<std::string> vellan;
  for (const auto& w : english) vellan.insert(*to_vellan(w));
  std::set<size_t> word_counts;
  auto check = [&](const Item& item) {
    const auto kind = classify_text(item.input);
    ASSERT_TRUE(kind.has_value()) << item.input;
    const auto words = split_world_tokens(item.input);
    if (*kind == Kind::kEnglish || *kind == Kind::kForeign) {
      word_counts.insert(words.size());
      for (const auto& w : words)
        EXPECT_TRUE((*kind == Kind::kEnglish ? english : vellan).count(w)) << item.input;
    } else if (*kind == Kind::kNumbers) {
      ASSERT_EQ(words.size(), 2u) << item.input;
      for (const auto& w : words) EXPECT_LE(std::stoi(w), 9) << item.input;
    } else if (*kind == Kind::kFacts) {
      EXPECT_EQ(parse_facts(item.input)->pairs.size(), 2u) << item.input;
    }
  };
  for (const Item& item : make_it_items(3, 400, shape)) check(item);
  for (const Item& item : make_eval_items(3, 40, 3, shape)) check(item);
  EXPECT_EQ(word_counts, (std::set<size_t>{2, 3}));
  EXPECT_EQ(make_it_items(3, 50), make_it_items(3, 50, InputShape{}));

  InputShape bad = shape;
  bad.max_words = 13;  // 13 distinct words from a lexicon of 12
  EXPECT_THROW(make_it_items(3, 1, bad), seqit::Error);
  bad = shape;
  bad.max_numbers = 12;  // 12 numbers up to 9 can sum past 99
  EXPECT_THROW(make_eval_items(3, 1, 1, bad), seqit::Error);
  bad = shape;
  bad.min_words = 4;  // min above max
  EXPECT_THROW(bad.validate(), seqit::Error);
}
