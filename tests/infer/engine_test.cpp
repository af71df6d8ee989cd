// Generation and scoring on the real stories260K model with its tokenizer.
#include <gtest/gtest.h>

#include <cmath>

#include "infer/engine.h"
#include "infer/scoring.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace seqit::infer;
using seqit::model::LlamaModel;
using seqit::tensor::Tensor;
using seqit::testing::shared_data;

namespace {
struct Stories {
  std::unique_ptr<LlamaModel> model =
      LlamaModel::load(shared_data("models/stories260K/stories260K.bin"));
  std::unique_ptr<seqit::tokenizer::Tokenizer> tok =
      seqit::tokenizer::load_tokenizer(shared_data("models/stories260K/tok512.bin"));
  std::vector<TokenId> encode(const std::string& text) const { return tok->encode(text); }
};
Stories& stories() {
  static Stories s;
  return s;
}

GenerationRequest request(std::vector<TokenId> prompt, int64_t max_new = 40) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.stop.max_new_tokens = max_new;
  return r;
}

GenerationResult alone(GenerationRequest r) {
  Engine engine(*stories().model, stories().tok.get());
  return engine.generate({std::move(r)})[0];
}
}  // namespace

TEST(Generate, Stories260KGreedyFromBosTellsTheKnownStory) {
  GenerationResult r = alone(request({1}, 40));
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park.";
  EXPECT_EQ(r.text.substr(0, story.size()), story);
  EXPECT_EQ(r.finish, FinishReason::length);
  EXPECT_EQ(r.tokens.size(), 40u);
  EXPECT_EQ(r.prompt_tokens, 1);
  // The text is the tokenizer's decoding of the tokens.
  EXPECT_EQ(r.text, stories().tok->decode(r.tokens));
}

// Logprobs of generated tokens are the log-softmax of the model's logits at that step, computed
// here independently (a full forward pass of prompt + tokens so far, log-sum-exp in double); the
// top alternatives are the k largest of the same distribution, most likely first, and under greedy
// decoding the chosen token is the first of them.
TEST(Generate, LogprobsAndTopLogprobsAreTheModelsLogSoftmax) {
  GenerationRequest r = request(stories().encode("Once upon a time"), 12);
  r.logprobs = true;
  r.top_logprobs = 5;
  const GenerationResult got = alone(r);
  ASSERT_EQ(got.token_logprobs.size(), got.tokens.size());
  ASSERT_EQ(got.top_logprobs.size(), got.tokens.size());
  std::vector<int32_t> seq = r.prompt;
  for (size_t t = 0; t < got.tokens.size(); ++t) {
    const Tensor logits = stories().model->forward_sequence(seq);
    const auto V = logits.size(1);
    const float* row = logits.data<float>() + (logits.size(0) - 1) * V;
    double max = row[0], sum = 0;
    for (int64_t i = 0; i < V; ++i) max = std::max(max, static_cast<double>(row[i]));
    for (int64_t i = 0; i < V; ++i) sum += std::exp(row[i] - max);
    auto lsm = [&](TokenId id) { return row[id] - max - std::log(sum); };
    EXPECT_NEAR(got.token_logprobs[t], lsm(got.tokens[t]), 1e-4) << t;
    const auto& top = got.top_logprobs[t];
    ASSERT_EQ(top.size(), 5u);
    EXPECT_EQ(top[0].first, got.tokens[t]);  // greedy
    for (size_t k = 0; k < top.size(); ++k) {
      EXPECT_NEAR(top[k].second, lsm(top[k].first), 1e-4);
      if (k) {
        EXPECT_GE(top[k - 1].second, top[k].second);
      }
    }
    // Nothing outside the top 5 is more likely than the fifth.
    int64_t above = 0;
    for (int64_t i = 0; i < V; ++i)
      above += lsm(static_cast<TokenId>(i)) > top[4].second + 1e-4;  // the tolerance above
    EXPECT_LE(above, 4);
    seq.push_back(got.tokens[t]);
  }
  GenerationRequest bad = request({1}, 4);
  bad.top_logprobs = 21;
  Engine engine(*stories().model, stories().tok.get());
  EXPECT_THROW(engine.add(bad), seqit::Error);
}

TEST(Generate, RaggedContinuousBatchEqualsEachPromptAlone) {
  std::vector<std::string> texts = {"Once upon a time", "The dog",
                                    "Tom and Sue went to the big park to play with a ball", "Lily"};
  std::vector<GenerationResult> want;
  for (const auto& t : texts)
    want.push_back(alone(request(stories().encode(t), 25 + static_cast<int64_t>(t.size() % 7))));
  // Two at a time, small steps (chunked prefill mixed with decoding), a late arrival.
  EngineOptions o;
  o.max_batch = 2;
  o.max_step_tokens = 6;
  Engine engine(*stories().model, stories().tok.get(), o);
  std::vector<RequestId> ids;
  for (size_t i = 0; i + 1 < texts.size(); ++i) {
    ids.push_back(engine.add(
        request(stories().encode(texts[i]), 25 + static_cast<int64_t>(texts[i].size() % 7))));
  }
  std::map<RequestId, GenerationResult> done;
  std::map<RequestId, std::string> streamed;
  int steps = 0;
  while (!engine.idle() || ids.size() < texts.size()) {
    if (++steps == 5)
      ids.push_back(engine.add(request(stories().encode(texts.back()),
                                       25 + static_cast<int64_t>(texts.back().size() % 7))));
    for (StepEvent& e : engine.step()) {
      streamed[e.id] += e.text;
      if (e.finished) done[e.id] = e.result;
    }
    ASSERT_LE(engine.running(), 2u);
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(done[ids[i]].tokens, want[i].tokens) << texts[i];
    EXPECT_EQ(done[ids[i]].text, want[i].text) << texts[i];
    EXPECT_EQ(streamed[ids[i]], want[i].text) << "streamed pieces add up to the text";
  }
}

TEST(Generate, SeededSamplingIsReproducibleAndBatchIndependent) {
  auto sampled = [](uint64_t seed) {
    GenerationRequest r = request({1}, 40);
    r.sampling.temperature = 1.0f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = seed;
    return r;
  };
  GenerationResult a = alone(sampled(7)), b = alone(sampled(7)), c = alone(sampled(8));
  EXPECT_EQ(a.text, b.text);
  EXPECT_NE(a.text, c.text);
  // In a batch with others, the same seed still gives the same text.
  Engine engine(*stories().model, stories().tok.get());
  auto results = engine.generate({sampled(8), request({1}, 10), sampled(7)});
  EXPECT_EQ(results[2].text, a.text);
  EXPECT_EQ(results[0].text, c.text);
}

TEST(Generate, StopStringsEosAndStreamingCallback) {
  std::string streamed;
  GenerationRequest r = request({1}, 100);
  r.stop.stop_strings = {" named"};
  r.on_text = [&](std::string_view piece) { streamed += piece; };
  GenerationResult res = alone(std::move(r));
  EXPECT_EQ(res.text, "Once upon a time, there was a little girl");
  EXPECT_EQ(res.finish, FinishReason::stop_string);
  EXPECT_EQ(res.stop_string, " named");
  EXPECT_EQ(streamed, res.text);

  // An end token: stop at the first "." token id.
  GenerationRequest e = request({1}, 100);
  TokenId period = *stories().tok->token_id(".");
  e.stop.stop_tokens = {period};
  res = alone(std::move(e));
  EXPECT_EQ(res.text, "Once upon a time, there was a little girl named Lily");
  EXPECT_EQ(res.finish, FinishReason::stop_token);

  // EOS ends a (sampled) story on its own when allowed to run long enough.
  GenerationRequest sampled = request({1}, 400);
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.seed = 3;
  GenerationResult longer = alone(std::move(sampled));
  EXPECT_EQ(longer.finish, FinishReason::stop_token) << longer.text;
  EXPECT_LT(longer.tokens.size(), 400u);
}

TEST(Generate, CancelAndBadRequests) {
  Engine engine(*stories().model, stories().tok.get());
  RequestId a = engine.add(request({1}, 50));
  RequestId b = engine.add(request({1}, 50));
  engine.step();
  engine.cancel(a);
  bool saw_cancel = false;
  while (!engine.idle()) {
    for (StepEvent& e : engine.step()) {
      if (e.id == a && e.finished) saw_cancel = e.result.finish == FinishReason::cancelled;
      if (e.id == b && e.finished) {
        EXPECT_EQ(e.result.tokens.size(), 50u);
      }
    }
  }
  EXPECT_TRUE(saw_cancel);
  EXPECT_THROW(engine.add(request({})), seqit::Error);
  EXPECT_THROW(engine.add(request({1, 9999})), seqit::Error);
  EXPECT_THROW(engine.add(request(std::vector<TokenId>(512, 1))), seqit::Error);
  // Context full: a prompt of 500 leaves room for 12 tokens.
  GenerationResult full = alone(request(std::vector<TokenId>(500, 1), 100));
  EXPECT_EQ(full.finish, FinishReason::context_full);
  EXPECT_EQ(full.tokens.size(), 12u);
}

TEST(Score, LogLikelihoodsEqualTheFullForwardAndBatchingChangesNothing) {
  const LlamaModel& m = *stories().model;
  std::vector<ScoreRequest> reqs = {
      {stories().encode("Once upon a time"), {261, 378}},
      {stories().encode("The cat"), stories().tok->encode(" was happy", {false, true})},
      {{1}, stories().tok->encode("Once upon a time, there was a little girl", {false, true})},
  };
  auto results = score_continuations(m, reqs);
  ScoreOptions tiny;
  tiny.max_step_tokens = 3;
  auto chunked = score_continuations(m, reqs, tiny);
  for (size_t i = 0; i < reqs.size(); ++i) {
    std::vector<int32_t> all = reqs[i].context;
    all.insert(all.end(), reqs[i].continuation.begin(), reqs[i].continuation.end());
    Tensor logits = m.forward_sequence(all);
    double want = 0;
    bool greedy = true;
    for (size_t k = 0; k < reqs[i].continuation.size(); ++k) {
      int64_t pos = static_cast<int64_t>(reqs[i].context.size() + k) - 1;
      const float* row = logits.narrow(0, pos, 1).data<float>();
      double mx = *std::max_element(row, row + 512), z = 0;
      for (int v = 0; v < 512; ++v) z += std::exp(row[v] - mx);
      int32_t target = reqs[i].continuation[k];
      want += row[target] - mx - std::log(z);
      greedy &= std::max_element(row, row + 512) - row == target;
    }
    EXPECT_NEAR(results[i].logprob, want, 1e-3) << i;
    EXPECT_NEAR(chunked[i].logprob, want, 1e-3) << i;
    EXPECT_EQ(results[i].is_greedy, greedy) << i;
    EXPECT_EQ(results[i].token_logprobs.size(), reqs[i].continuation.size());
  }
  // The model's own greedy story is greedy; a reordering of it is not and is less likely.
  EXPECT_TRUE(results[2].is_greedy);
  // The engine's logprobs of its own greedy tokens equal the scorer's.
  GenerationRequest g = request({1}, 12);
  g.logprobs = true;
  GenerationResult gen = alone(std::move(g));
  ASSERT_EQ(gen.token_logprobs.size(), 12u);
  auto same = score_continuations(m, std::vector<ScoreRequest>{{{1}, gen.tokens}});
  for (size_t k = 0; k < 12; ++k)
    EXPECT_NEAR(gen.token_logprobs[k], same[0].token_logprobs[k], 1e-4) << k;
  EXPECT_TRUE(same[0].is_greedy);
  std::vector<ScoreRequest> pair = {
      {{1}, stories().tok->encode("Once upon a time", {false, true})},
      {{1}, stories().tok->encode("time a upon Once", {false, true})}};
  auto two = score_continuations(m, pair);
  EXPECT_GT(two[0].logprob, two[1].logprob);
  EXPECT_THROW(score_continuations(m, std::vector<ScoreRequest>{{{}, {1}}}), seqit::Error);
}

// A shared context runs once and each request continues from its cache (cut back between them);
// several groups share forward passes: the same log-likelihoods as each request scored whole, in
// passes of any size.
TEST(Score, GroupsWithASharedContextScoreAsWholeRequests) {
  const LlamaModel& m = *stories().model;
  const std::vector<std::string> prompts = {"Once upon a time, there was a little",
                                            "The cat sat on the", "Lily"};
  const std::vector<std::vector<std::string>> answers = {
      {" girl", " dog who liked to run", " zebra"}, {" mat", " big red chair"}, {" smiled"}};
  std::vector<ScoreGroup> groups;
  std::vector<ScoreRequest> whole;
  for (size_t g = 0; g < prompts.size(); ++g) {
    const std::vector<int32_t> prompt = stories().encode(prompts[g]);
    ScoreGroup group;
    // The last prompt token is each request's own context: its logits predict the answer.
    group.shared.assign(prompt.begin(), prompt.end() - 1);
    for (const auto& a : answers[g]) {
      const auto tail = stories().tok->encode(a, {false, true});
      group.requests.push_back({{prompt.back()}, tail});
      whole.push_back({prompt, tail});
    }
    groups.push_back(std::move(group));
  }
  groups.push_back({});  // an empty group is allowed
  const auto want = score_continuations(m, whole);
  ScoreOptions tiny;
  tiny.max_step_tokens = 3;
  for (const auto& options : {ScoreOptions{}, tiny}) {
    const auto got = score_groups(m, groups, options);
    ASSERT_EQ(got.size(), groups.size());
    EXPECT_TRUE(got.back().empty());
    size_t w = 0;
    for (size_t g = 0; g < prompts.size(); ++g) {
      ASSERT_EQ(got[g].size(), answers[g].size());
      for (size_t i = 0; i < got[g].size(); ++i, ++w) {
        EXPECT_NEAR(got[g][i].logprob, want[w].logprob, 1e-4) << g << " " << i;
        EXPECT_EQ(got[g][i].is_greedy, want[w].is_greedy) << g << " " << i;
        EXPECT_EQ(got[g][i].token_logprobs.size(), whole[w].continuation.size());
      }
    }
  }
  EXPECT_GT(want[0].logprob, want[2].logprob);  // girls before zebras
  // Shared tokens are checked like the others, and so is the context.
  groups[0].shared.push_back(99999);
  EXPECT_THROW(score_groups(m, groups), seqit::Error);
  groups[0].shared.pop_back();
  groups[1].shared.assign(600, 1);
  EXPECT_THROW(score_groups(m, groups), seqit::Error);
}
