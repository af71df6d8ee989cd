#include "synth/split.h"

#include <fmt/format.h>

#include "util/error.h"

namespace seqit::synth {

namespace {
// Streams of the seed, one per generator, so that one data set does not shift another.
constexpr uint64_t kSaltIt = 1, kSaltTrainChains = 2, kSaltEval = 3;

// A rejection loop that cannot end means a bug in the world's tables, not bad luck: each
// accepted draw has probability well above 1e-3.
constexpr int kMaxTries = 100000;

Kind random_input_kind(Rng& rng) {
  // english, vellan, numbers, facts
  static const std::vector<double> weights = {0.45, 0.15, 0.25, 0.15};
  return kInputKinds[rng.weighted(weights)];
}
}  // namespace

bool is_eval_input(std::string_view input) {
  return fnv1a64(canonical_text(input)) % 5 == 0;
}

std::string random_split_input(Kind kind, Split split, Rng& rng, const InputShape& shape) {
  for (int i = 0; i < kMaxTries; ++i) {
    std::string s = random_input(kind, rng, shape);
    if (is_eval_input(s) == (split == Split::kEval)) return s;
  }
  throw Error(fmt::format("synth: no {} input of kind {} found",
                          split == Split::kEval ? "eval" : "train", kind_name(kind)));
}

Chain random_chain(Kind input, int steps, Split split, Rng& rng) {
  if (steps < 1) throw Error("synth: a chain has at least one step");
  bool eval = split == Split::kEval;
  for (int attempt = 0; attempt < kMaxTries; ++attempt) {
    Chain c;
    Kind k = input;
    for (int i = 0; i < steps; ++i) {
      std::vector<TaskId> ok;
      for (TaskId t : atomic_tasks()) {
        if (!accepts(t, k)) continue;
        if (!c.steps.empty()) {
          TaskId prev = c.steps.back().task;
          if (!may_follow(prev, t) || (!eval && is_held_out_pair(prev, t))) continue;
        }
        ok.push_back(t);
      }
      if (ok.empty()) break;
      TaskId t = rng.pick(ok);
      c.steps.push_back({t, random_phrasing(t, eval, rng)});
      k = *output_kind(t, k);
    }
    if (static_cast<int>(c.steps.size()) != steps) continue;
    if (eval && steps >= 2 && !has_held_out_pair(c)) continue;
    if (steps >= 2) c.connective = random_connective(rng);
    return c;
  }
  throw Error(fmt::format("synth: no {}-step chain found for {} input", steps, kind_name(input)));
}

Item make_item(std::string id, Chain chain, std::string_view input) {
  Item item;
  item.id = std::move(id);
  item.input = canonical_text(input);
  item.instruction = render_instruction(chain);
  item.response = reference_response(chain, item.input);
  item.chain = std::move(chain);
  return item;
}

std::vector<Item> make_it_items(uint64_t seed, int64_t count, const InputShape& shape) {
  shape.validate();
  Rng rng = Rng(seed).fork(kSaltIt);
  std::vector<Item> out;
  for (int64_t i = 0; i < count; ++i) {
    TaskId t = rng.chance(0.8) ? rng.pick(atomic_tasks()) : rng.pick(compound_tasks());
    std::vector<Kind> kinds;
    for (Kind k : kInputKinds)
      if (accepts(t, k)) kinds.push_back(k);
    std::string input = random_split_input(rng.pick(kinds), Split::kTrain, rng, shape);
    Chain c{{{t, random_phrasing(t, false, rng)}}, Connective::kFirstThen};
    out.push_back(make_item(fmt::format("synth-it-{:06d}", i), std::move(c), input));
  }
  return out;
}

std::vector<Item> make_train_chain_items(uint64_t seed, int64_t count, int max_steps) {
  if (max_steps < 1 || max_steps > kMaxTrainSteps)
    throw Error(
        fmt::format("synth: training chains have 1..{} steps, not {}", kMaxTrainSteps, max_steps));
  Rng rng = Rng(seed).fork(kSaltTrainChains);
  std::vector<Item> out;
  for (int64_t i = 0; i < count; ++i) {
    Kind kind = random_input_kind(rng);
    int steps = static_cast<int>(rng.between(1, max_steps));
    Chain c = random_chain(kind, steps, Split::kTrain, rng);
    std::string input = random_split_input(kind, Split::kTrain, rng);
    out.push_back(make_item(fmt::format("synth-train-{:06d}", i), std::move(c), input));
  }
  return out;
}

std::vector<Item> make_eval_items(uint64_t seed, int64_t per_length, int max_steps,
                                  const InputShape& shape) {
  shape.validate();
  if (max_steps < 1 || max_steps > kMaxEvalSteps)
    throw Error(
        fmt::format("synth: evaluation chains have 1..{} steps, not {}", kMaxEvalSteps, max_steps));
  Rng rng = Rng(seed).fork(kSaltEval);
  std::vector<Item> out;
  for (int steps = 1; steps <= max_steps; ++steps) {
    for (int64_t i = 0; i < per_length; ++i) {
      Kind kind = random_input_kind(rng);
      Chain c = random_chain(kind, steps, Split::kEval, rng);
      std::string input = random_split_input(kind, Split::kEval, rng, shape);
      out.push_back(make_item(fmt::format("synth-eval-{}-{:05d}", steps, i), std::move(c), input));
    }
  }
  return out;
}

data::Instruction to_instruction(const Item& item) {
  data::Instruction r;
  r.id = item.id;
  r.instruction = item.instruction;
  r.input = item.input;
  r.output = item.response;
  r.meta.set_string("synth_chain", describe(item.chain));
  r.meta.set_integer("synth_steps", static_cast<int64_t>(item.chain.steps.size()));
  return r;
}

}  // namespace seqit::synth
