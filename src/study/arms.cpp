#include "study/arms.h"

#include <fmt/format.h>

#include <cmath>
#include <future>

#include "seqinstruct/pipeline.h"
#include "synth/grade.h"
#include "synth/split.h"
#include "synth/teacher.h"
#include "tokenizer/batch.h"
#include "util/error.h"

namespace seqit::study {

namespace {

using seqinstruct::Mode;

std::vector<seqinstruct::SourceItem> sources(const std::vector<synth::Item>& items) {
  std::vector<seqinstruct::SourceItem> out;
  out.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i)
    out.push_back(
        seqinstruct::to_source_item(synth::to_instruction(items[i]), static_cast<int64_t>(i)));
  return out;
}

seqinstruct::PipelineResult run(synth::Teacher& teacher, const std::string& model,
                                const std::vector<seqinstruct::SourceItem>& items, Mode mode,
                                const std::filesystem::path& trace, const ArmOptions& o) {
  seqinstruct::PipelineOptions p;
  p.mode = mode;
  p.iterations = o.iterations;
  p.seed = o.seed;
  // The model name carries the teacher's settings, so a trace of another teacher is refused.
  p.model = model;
  p.max_in_flight = 256;
  seqinstruct::PipelineResult result = seqinstruct::run_pipeline(
      teacher, seqinstruct::load_prompt_set("default"), items, trace, p, o.fresh);
  for (const auto& item : result.items)
    if (!item.complete)
      throw Error(fmt::format("the pipeline left item '{}' unfinished", item.source->id))
          .in_file(trace.string());
  return result;
}

// The pipeline's record, with its chain described again after the edits.
data::Instruction record_of(const seqinstruct::ItemResult& item, bool sit) {
  data::Instruction r = std::get<data::Instruction>(seqinstruct::training_record(item));
  const std::optional<synth::Chain> chain = synth::parse_instruction(r.instruction);
  if (!chain)
    throw Error(fmt::format("item '{}': the teacher's instruction is not of the world: '{}'", r.id,
                            r.instruction));
  r.meta.set_string("synth_chain", synth::describe(*chain));
  r.meta.set_integer("synth_steps", static_cast<int64_t>(chain->steps.size()));
  if (sit) {
    r.meta.set_string("sit_options", std::string(item.options.begin(), item.options.end()));
    const synth::Grade g = synth::grade_response(*chain, r.input, r.output);
    int64_t wrong = 0;
    for (const auto& s : g.steps) wrong += s.correct ? 0 : 1;
    r.meta.set_integer("synth_corrupted_steps", wrong);
  }
  return r;
}

void count(Arm& arm, const tokenizer::Tokenizer& tok) {
  arm.response_tokens = arm.prompt_tokens = 0;
  arm.steps.clear();
  for (const data::Instruction& r : arm.records) {
    arm.response_tokens += static_cast<int64_t>(tokenizer::count_tokens(tok, r.output));
    arm.prompt_tokens += static_cast<int64_t>(
        tokenizer::count_tokens(tok, seqinstruct::join_prompt(r.instruction, r.input)));
    ++arm.steps[*r.meta.get_integer("synth_steps")];
  }
}

Arm sit_arm(std::string name, const seqinstruct::PipelineResult& result, int iterations,
            const tokenizer::Tokenizer& tok) {
  Arm arm;
  arm.name = std::move(name);
  arm.options.resize(static_cast<size_t>(iterations));
  for (const auto& item : result.items) {
    arm.records.push_back(record_of(item, true));
    // An item frozen (D) in an earlier pass counts as D in the later ones, as in the paper.
    for (size_t pass = 0; pass < arm.options.size(); ++pass)
      ++arm.options[pass][pass < item.options.size() ? item.options[pass] : 'D'];
  }
  count(arm, tok);
  return arm;
}

}  // namespace

size_t token_matched_prefix(const std::vector<int64_t>& tokens, int64_t target, double tolerance) {
  // The shortest prefix that reaches the target, or the one before it when that is closer.
  int64_t sum = 0;
  size_t n = 0;
  while (n < tokens.size() && sum < target) sum += tokens[n++];
  if (sum < target)
    throw Error(fmt::format("token matching: the pool of {} items holds {} tokens, short of {}",
                            tokens.size(), sum, target));
  if (n > 0 && target - (sum - tokens[n - 1]) < sum - target) sum -= tokens[--n];
  if (std::abs(static_cast<double>(sum - target)) > tolerance * static_cast<double>(target))
    throw Error(fmt::format("token matching: {} items hold {} tokens, not within {}% of {}", n, sum,
                            tolerance * 100, target));
  return n;
}

Arms build_arms(const ArmOptions& o, const tokenizer::Tokenizer& tok) {
  if (o.items < 1) throw Error("the arms need at least one item");
  if (o.pool_factor < 1) throw Error("pool_factor must be at least 1");
  if (o.work_dir.empty()) throw Error("the arms need a work folder for the pipeline traces");
  std::filesystem::create_directories(o.work_dir);

  const std::vector<synth::Item> pool_items =
      synth::make_it_items(o.seed, o.items * o.pool_factor, o.shape);
  const std::vector<seqinstruct::SourceItem> pool = sources(pool_items);
  const std::vector<seqinstruct::SourceItem> items(pool.begin(), pool.begin() + o.items);

  // The three pipeline runs share nothing (each its own teacher, items and trace): they run at
  // once, on the cores the trainings will use next (each result is the same as run alone).
  synth::TeacherOptions corrupting;
  corrupting.corrupt = o.corrupt;
  synth::Teacher teacher, sit_teacher, corrupt_teacher(corrupting);
  auto sit_run = std::async(std::launch::async, [&] {
    return run(sit_teacher, "synth-teacher", items, Mode::sit, o.work_dir / "sit.trace.jsonl", o);
  });
  auto corrupted_run = std::async(std::launch::async, [&] {
    return run(corrupt_teacher, fmt::format("synth-teacher-corrupt-{}", o.corrupt), items,
               Mode::sit, o.work_dir / "sit-corrupted.trace.jsonl", o);
  });
  const seqinstruct::PipelineResult direct =
      run(teacher, "synth-teacher", pool, Mode::direct, o.work_dir / "it-pool.trace.jsonl", o);
  const seqinstruct::PipelineResult sit = sit_run.get();
  const seqinstruct::PipelineResult corrupted = corrupted_run.get();

  Arms arms;

  arms.it.name = "it";
  for (int64_t i = 0; i < o.items; ++i)
    arms.it.records.push_back(record_of(direct.items[static_cast<size_t>(i)], false));
  count(arms.it, tok);
  arms.sit = sit_arm("sit", sit, o.iterations, tok);
  arms.sit_corrupted = sit_arm("sit_corrupted", corrupted, o.iterations, tok);

  std::vector<int64_t> pool_tokens;
  pool_tokens.reserve(direct.items.size());
  for (const auto& item : direct.items)
    pool_tokens.push_back(static_cast<int64_t>(tokenizer::count_tokens(tok, item.output)));
  const size_t take =
      token_matched_prefix(pool_tokens, arms.sit.response_tokens, o.token_tolerance);
  arms.it_matched.name = "it_matched";
  for (size_t i = 0; i < take; ++i)
    arms.it_matched.records.push_back(record_of(direct.items[i], false));
  count(arms.it_matched, tok);
  return arms;
}

}  // namespace seqit::study
