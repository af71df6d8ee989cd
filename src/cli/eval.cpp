// `seqit eval`: task evaluations through llm::Backend (one subcommand per task), named suites, and
// the comparison of runs. See docs/eval.md.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "cli/backend_options.h"
#include "cli/command.h"
#include "eval/report.h"
#include "eval/runner.h"
#include "eval/seqeval.h"
#include "eval/tasks.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::cli {
namespace {
namespace fs = std::filesystem;

struct EvalOptions {
  std::string output;
  BackendOptions backend;
  eval::TaskOptions task;
  bool fresh = false;
  std::string on_error = "stop";
};

std::string default_data_dir() {
  return find_shared_data("eval").value_or("../shared/data/eval").string();
}

// What changes the answers (so a resume must match it); the limit and the backend's address may
// change between runs.
std::string config_of(const eval::TaskOptions& t, const std::string& task = "") {
  return fmt::format(
      "shots={} chat={} turns={} seed={} max_tokens={} samples={} temperature={} model={}{}{}",
      t.shots, t.chat, t.shots_as_turns, t.seed, t.max_tokens, t.samples, t.temperature, t.model,
      t.max_prompt_chars > 0 ? fmt::format(" max_prompt_chars={}", t.max_prompt_chars) : "",
      task.starts_with("mgsm") ? " mgsm_exemplars=" + t.mgsm_exemplars : "");
}

// Runs `task` into `results`; nullopt when interrupted (the results are kept for a rerun).
std::optional<eval::RunResult> run_into(const eval::Task& task, const EvalOptions& o,
                                        llm::Backend& backend, int concurrency,
                                        const fs::path& results, const std::string& config,
                                        InterruptGuard& guard) {
  const std::string name = task.name();
  eval::RunOptions run;
  run.max_in_flight = std::max(8, 4 * concurrency);
  run.fresh = o.fresh;
  run.stop_on_error = o.on_error == "stop";
  run.interrupted = [&] { return guard.requested(); };
  run.config = config;
  Progress progress(fmt::format("eval {}", name), static_cast<int64_t>(task.size()), "items");
  run.progress = [&](const eval::RunCounts& c) {
    progress.set(c.done);
    progress.set_note(fmt::format("{} req ({} cached), {} resumed{}", c.requests, c.cached,
                                  c.resumed, c.failed ? fmt::format(", {} failed", c.failed) : ""));
  };
  log::info("eval {}: {} items via {} -> {}", name, task.size(), backend.describe(),
            results.string());
  eval::RunResult result;
  try {
    result = eval::run_task(backend, task, results, run);
  } catch (...) {
    progress.finish();
    throw;
  }
  progress.finish();
  if (!result.complete) {
    if (guard.requested()) {
      log::warn(
          "eval {}: stopped by signal; {} of {} items are in {}: rerun the same command to "
          "go on",
          name, result.counts.done, result.counts.items, results.string());
      return std::nullopt;
    }
    if (o.on_error == "stop")
      throw Error(
          fmt::format("eval {}: {} items failed on backend errors (see the warnings above); "
                      "rerun the same command to retry them, finished items are kept",
                      name, result.counts.failed));
    // --on-error skip: the report covers the items that were scored ("N of M items scored").
    log::warn(
        "eval {}: {} items failed on backend errors and are left out of the report (see the "
        "warnings above); a rerun retries them",
        name, result.counts.failed);
  }
  return result;
}

// Writes DIR/report.{json,md} and prints the one-line summary.
void report_run(const eval::Task& task, const eval::TaskOptions& t, const eval::RunResult& result,
                const std::string& backend, const fs::path& dir) {
  const auto report = eval::build_report(task, result.items, static_cast<int64_t>(task.size()),
                                         eval::report_settings(task, t, backend));
  eval::write_report(dir, report);
  std::string main;
  for (const auto& m : report.main_metrics) {
    auto it = report.metrics.find(m.key);
    if (it != report.metrics.end())
      main += fmt::format("{}{} {:.4f} [{:.4f}, {:.4f}]", main.empty() ? "" : "; ", m.key,
                          it->second.mean, it->second.lower, it->second.upper);
  }
  for (const auto& [k, v] : report.aggregates)
    main += fmt::format("{}{} {:.4f}", main.empty() ? "" : "; ", k, v);
  if (main.empty()) main = "nothing scored";
  std::fprintf(stderr,
               "eval %s: %lld items (%lld resumed, %lld requests, %lld from the cache); %s; no "
               "answer %.1f%%; report: %s\n",
               task.name().c_str(), (long long)report.items, (long long)result.counts.resumed,
               (long long)result.counts.requests, (long long)result.counts.cached, main.c_str(),
               100.0 * report.no_answer_rate, (dir / "report.md").c_str());
}

// Runs one task into `dir`; false when interrupted.
bool run_one(const std::string& name, const EvalOptions& o, llm::Backend& backend,
             const fs::path& dir, InterruptGuard& guard) {
  eval::TaskOptions t = o.task;
  if (t.model.empty()) t.model = o.backend.model;
  const auto task = eval::make_task(name, t);
  fs::create_directories(dir);
  const auto result = run_into(*task, o, backend, o.backend.concurrency, dir / "results.jsonl",
                               config_of(t, name), guard);
  if (!result) return false;
  report_run(*task, t, *result, backend.describe(), dir);
  return true;
}

void add_common(CLI::App& cmd, EvalOptions& o, bool with_limit) {
  cmd.add_option("-o,--output", o.output,
                 "Output folder: results.jsonl (one line per item, resumable), report.json, "
                 "report.md, cache.sqlite")
      ->required();
  add_backend_options(cmd, o.backend);
  if (with_limit)
    cmd.add_option("--limit", o.task.limit,
                   "Only the first N items (per subject/language/category where the task has "
                   "them)");
  cmd.add_option("--groups", o.task.groups,
                 "Only these groups, comma-separated: MMLU subjects, BBH tasks, MGSM/XQuAD "
                 "languages, SIFo categories, coi2/coi3")
      ->delimiter(',');
  cmd.add_option("--shots", o.task.shots, "Exemplars per prompt (default: the task's)");
  cmd.add_option("--mgsm-exemplars", o.task.mgsm_exemplars,
                 "MGSM: translated (questions in the item's language, the last K test problems "
                 "held out as exemplars, with their English worked answers) or english (GSM8K "
                 "training problems in English for every language)")
      ->check(CLI::IsMember({"translated", "english"}))
      ->capture_default_str();
  cmd.add_option("--seed", o.task.seed, "Seed of sampling requests")->capture_default_str();
  cmd.add_option("--max-tokens", o.task.max_tokens, "New tokens per reply (default: the task's)");
  cmd.add_flag("--chat,!--no-chat", o.task.chat,
               "Generation tasks: chat requests through the model's template (default), or raw "
               "completion prompts ending with the answer cue")
      ->capture_default_str();
  cmd.add_option("--max-prompt-chars", o.task.max_prompt_chars,
                 "Drop exemplars (from the last) until a prompt fits N characters; the report "
                 "gives the mean kept (for small-context models)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--samples", o.task.samples, "HumanEval: samples per problem (default 20)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--temperature", o.task.temperature,
                 "HumanEval: sampling temperature (default 0.8)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--shots-as-turns", o.task.shots_as_turns,
               "With --chat: one user/assistant turn pair per exemplar instead of one user turn");
  cmd.add_option("--data-dir", o.task.data_dir,
                 "The evaluation data (default: $SEQIT_SHARED_DATA/eval or ../shared/data/eval)");
  cmd.add_flag("--fresh", o.fresh, "Start results.jsonl anew instead of resuming it");
  cmd.add_option("--on-error", o.on_error,
                 "stop: stop at the first failed request; skip: go on and report the items that "
                 "were scored (a rerun retries the others)")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->capture_default_str();
}

// `seqit eval seqeval`: responses from the model, then the judge on its own backend.
struct SeqEvalOptions {
  EvalOptions eval;
  std::vector<std::string> judge_urls;
  std::string judge_local, judge_tokenizer, judge_chat_template, judge_model, reference;
  int judge_concurrency = 16, judge_max_tokens = 1024;
  std::string judge_format = "auto";
  bool judge_logprobs = false;
};

void run_seqeval(SeqEvalOptions& s) {
  EvalOptions& o = s.eval;
  if (o.task.data_dir.empty()) o.task.data_dir = default_data_dir();
  if (s.judge_urls.empty() == s.judge_local.empty())
    throw Error(
        "give the judge: --judge-url URL (an OpenAI-compatible server) or --judge-local "
        "MODEL; it should not be the model under test");
  const fs::path dir = o.output;
  fs::create_directories(dir);
  eval::TaskOptions t = o.task;
  if (t.model.empty()) t.model = o.backend.model;
  InterruptGuard guard;

  const OpenedBackend model = open_backend(o.backend, (dir / "cache.sqlite").string());
  const auto generate = eval::make_seqeval_responses(t);
  const auto responses = run_into(*generate, o, *model.backend, o.backend.concurrency,
                                  dir / "responses.jsonl", config_of(t), guard);
  if (!responses) return;
  std::vector<std::optional<std::string>> texts(generate->size());
  for (const auto& item : responses->items) texts.at(std::stoul(item.id)) = item.replies.at(0);

  BackendOptions j = o.backend;
  j.urls = s.judge_urls;
  j.local_model = s.judge_local;
  j.tokenizer = s.judge_tokenizer;
  j.chat_template = s.judge_chat_template;
  j.model = s.judge_model;
  j.concurrency = s.judge_concurrency;
  j.cache.clear();
  const OpenedBackend judge = open_backend(j, (dir / "judge_cache.sqlite").string());
  eval::SeqEvalJudgeOptions jo;
  jo.reference = s.reference;
  jo.judge_model = s.judge_model;
  jo.max_tokens = s.judge_max_tokens;
  jo.judge_backend = judge.backend->describe();
  jo.constrained =
      s.judge_format == "constrained" || (s.judge_format == "auto" && !s.judge_local.empty());
  jo.logprobs = s.judge_logprobs;
  const auto judging = eval::make_seqeval_judge(t, texts, jo);
  const auto judged =
      run_into(*judging, o, *judge.backend, s.judge_concurrency, dir / "results.jsonl",
               fmt::format("{} reference={} judge_model={} judge_max_tokens={}{}", config_of(t),
                           s.reference, s.judge_model, s.judge_max_tokens,
                           std::string(jo.constrained ? " judge_format=constrained" : "") +
                               (jo.logprobs ? " judge_logprobs=true" : "")),
               guard);
  if (!judged) return;
  report_run(*judging, t, *judged, model.backend->describe(), dir);
  log::info("eval seqeval: model {}; judge {}", model.cache_summary(), judge.cache_summary());
}

void setup_seqeval(CLI::App& cmd) {
  auto s = std::make_shared<SeqEvalOptions>();
  s->reference = "gpt4_1106_preview";
  add_common(cmd, s->eval, true);
  cmd.add_option("--judge-url", s->judge_urls,
                 "The judge: an OpenAI-compatible server (repeat for load balancing)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd.add_option("--judge-local", s->judge_local, "The judge: a model run in this process");
  cmd.add_option("--judge-tokenizer", s->judge_tokenizer, "With --judge-local: its tokenizer");
  cmd.add_option("--judge-chat-template", s->judge_chat_template,
                 "With --judge-local: its chat template (as --chat-template)");
  cmd.add_option("--judge-model", s->judge_model, "Model name sent with judge requests");
  cmd.add_option("--judge-concurrency", s->judge_concurrency, "Judge requests in flight")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_flag("--judge-logprobs", s->judge_logprobs,
               "Ask the pairwise judgements for log-probabilities and report AlpacaEval 2's "
               "weighted win rate (the judge's probability of each verdict) beside the counted one "
               "(the judge must return chat logprobs)");
  cmd.add_option("--judge-format", s->judge_format,
                 "auto | constrained | free: constrained sends each judgement's answer format as a "
                 "regex the judge must follow (no unparsable replies); auto = constrained with "
                 "--judge-local, free with --judge-url (only vLLM-style servers take guided_regex)")
      ->check(CLI::IsMember({"auto", "constrained", "free"}))
      ->capture_default_str();
  cmd.add_option("--judge-max-tokens", s->judge_max_tokens, "Tokens per judge reply")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--reference", s->reference,
                 "Pairwise reference: alpaca_eval/<NAME>_model_outputs.json (gpt4_1106_preview, "
                 "text_davinci_003, alpaca-7b)")
      ->capture_default_str();
  cmd.footer(
      "Writes responses.jsonl (the model's answers), results.jsonl (the judgements), report.md "
      "and report.json, cache.sqlite and judge_cache.sqlite; a rerun resumes both steps.");
  cmd.callback([s] { run_seqeval(*s); });
}

void setup_task(CLI::App& cmd, const std::string& name) {
  auto o = std::make_shared<EvalOptions>();
  add_common(cmd, *o, true);
  cmd.footer(
      "Every scored item is appended to results.jsonl at once and every answer to the response "
      "cache: after Ctrl-C or kill -9, rerun the same command and nothing is asked twice or "
      "written twice.");
  cmd.callback([o, name] {
    if (o->task.data_dir.empty()) o->task.data_dir = default_data_dir();
    const fs::path dir = o->output;
    fs::create_directories(dir);
    const OpenedBackend opened = open_backend(o->backend, (dir / "cache.sqlite").string());
    InterruptGuard guard;
    run_one(name, *o, *opened.backend, dir, guard);
    log::info("eval {}: {}", name, opened.cache_summary());
  });
}

void setup_suite(CLI::App& cmd) {
  auto o = std::make_shared<EvalOptions>();
  auto suite = std::make_shared<std::string>();
  cmd.add_option("name", *suite,
                 "quick (5 items of each generation task), sequential (SIFo; CoI and XQuAD when "
                 "they exist), paper (the paper's tasks that exist)")
      ->required()
      ->check(CLI::IsMember({"quick", "sequential", "paper"}));
  add_common(cmd, *o, false);
  auto limit = std::make_shared<int64_t>(-2);
  cmd.add_option("--limit", *limit, "Items per task (default: the suite's: quick 5, else all)");
  cmd.footer("Each task writes into OUTPUT/<task>/; one cache (OUTPUT/cache.sqlite) serves all.");
  cmd.callback([o, suite, limit] {
    if (o->task.data_dir.empty()) o->task.data_dir = default_data_dir();
    o->task.limit = *limit != -2 ? *limit : eval::suite_limit(*suite);
    const fs::path dir = o->output;
    fs::create_directories(dir);
    const OpenedBackend opened = open_backend(o->backend, (dir / "cache.sqlite").string());
    InterruptGuard guard;
    for (const auto& name : eval::suite_tasks(*suite)) {
      if (!run_one(name, *o, *opened.backend, dir / name, guard)) return;
    }
    log::info("eval suite {}: {}", *suite, opened.cache_summary());
  });
}

void setup_compare(CLI::App& cmd) {
  auto runs = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  auto labels = std::make_shared<std::vector<std::string>>();
  cmd.add_option("runs", *runs, "Output folders of `seqit eval` runs of the same task (2 or more)")
      ->required()
      ->expected(2, 64);
  cmd.add_option("-o,--output", *out, "Folder for compare.md, compare.json and compare.png")
      ->required();
  cmd.add_option("--label", *labels, "A name per run, in order (default: the folder names)");
  cmd.callback([runs, out, labels] {
    std::vector<fs::path> paths(runs->begin(), runs->end());
    const std::string md = eval::compare_runs(paths, *out, {*labels});
    std::fwrite(md.data(), 1, md.size(), stdout);
  });
}

void setup(CLI::App& cmd) {
  cmd.require_subcommand(1);
  for (const auto& name : eval::task_names())
    setup_task(*cmd.add_subcommand(name, eval::task_summary(name)), name);
  setup_seqeval(*cmd.add_subcommand(
      "seqeval",
      "SeqEval: responses to the sequential instructions, judged by another model "
      "(following, quality 1-5, win rate vs a reference, per iteration)"));
  setup_suite(*cmd.add_subcommand("suite", "Run a named set of tasks, each into its own folder"));
  setup_compare(*cmd.add_subcommand(
      "compare", "Compare runs side by side: differences with paired-bootstrap CIs, a bar chart"));
}

}  // namespace
SEQIT_COMMAND("eval", "Evaluate a model on tasks (GSM8K, MMLU, ARC, SIFo, ...) and compare runs",
              setup);
}  // namespace seqit::cli
