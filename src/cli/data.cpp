// `seqit data convert` and `seqit data stats`: instruction data in every format the field uses.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "data/convert.h"
#include "data/format.h"
#include "data/stats.h"
#include "tokenizer/tokenizer.h"
#include "util/log.h"

namespace seqit::cli {
namespace {

struct ConvertArgs {
  std::string in, out, from, to, on_error = "stop";
  bool ascii = false, no_final_newline = false;
  int indent = -1;
};

struct StatsArgs {
  std::string file, from, on_error = "stop", tokenizer;
  bool json = false;
};

std::string formats_footer() {
  return "Formats (--from/--to; add -json or -jsonl to pick the container, flancot-tsv for FLAN's "
         "TSV):\n" +
         data::formats_help() +
         "Aliases: tulu, messages = openai; coi = alpaca. See docs/data.md for the conversion "
         "rules.";
}

void run_convert(const ConvertArgs& a) {
  data::ConvertOptions options;
  if (!a.from.empty()) options.read.from = data::parse_format_request(a.from);
  options.read.on_error = data::parse_on_error(a.on_error);
  options.read.progress_label = "convert";
  options.to = data::parse_format_request(a.to);
  options.write.ascii = a.ascii;
  options.write.indent = a.indent;
  options.write.final_newline = !a.no_final_newline;
  data::ConvertReport r = data::convert_file(a.in, a.out, options);
  log::info("wrote {} records as {} to {} ({} read as {}{}{})", r.written, data::format_name(r.to),
            a.out, r.read, data::format_name(r.from),
            r.unreadable > 0 ? fmt::format(", {} unreadable", r.unreadable) : std::string(),
            r.unwritable > 0
                ? fmt::format(", {} not representable as {}", r.unwritable, data::format_name(r.to))
                : std::string());
  if (r.bad.count > 0) log::warn("{}", r.bad.summary());
}

void run_stats(const StatsArgs& a) {
  data::StatsOptions options;
  if (!a.from.empty()) options.read.from = data::parse_format_request(a.from);
  options.read.on_error = data::parse_on_error(a.on_error);
  options.read.progress_label = "stats";
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!a.tokenizer.empty()) {
    tok = tokenizer::load_tokenizer(a.tokenizer);
    // The record text as the model would see it inside a prompt: no BOS/EOS added, and
    // special-token text in the data counted as ordinary text.
    options.count_tokens = [t = tok.get()](std::string_view text) {
      tokenizer::EncodeOptions encode;
      encode.add_special = false;
      encode.parse_special = false;
      return static_cast<int64_t>(t->encode(text, encode).size());
    };
    options.tokenizer_name = fmt::format("{} ({})", tok->describe(), a.tokenizer);
  }
  data::DatasetStats stats = data::compute_stats(a.file, options);
  std::string text = a.json ? data::stats_to_json(stats) : data::stats_to_text(stats);
  std::fwrite(text.data(), 1, text.size(), stdout);
}

void setup(CLI::App& cmd) {
  cmd.require_subcommand(1);
  cmd.footer(formats_footer());

  auto convert_args = std::make_shared<ConvertArgs>();
  CLI::App* convert = cmd.add_subcommand("convert",
                                         "Convert a dataset between formats (writes atomically: "
                                         "the output appears whole or not at all)");
  convert->add_option("--in", convert_args->in, "Input file")->required()->check(CLI::ExistingFile);
  convert->add_option("--out", convert_args->out, "Output file (may be the input file)")
      ->required();
  convert->add_option("--from", convert_args->from,
                      "Input format (default: detected from the content)");
  convert
      ->add_option("--to", convert_args->to,
                   "Output format; the container follows --out's extension (.json: JSON array, "
                   ".tsv: TSV, else JSON lines) unless the name gives one")
      ->required();
  convert
      ->add_option(
          "--on-error", convert_args->on_error,
          "Bad records (unreadable, or impossible in the output format): stop at the first "
          "(nothing is written), or skip them and report how many and where")
      ->check(CLI::IsMember({"stop", "skip"}));
  convert->add_flag("--ascii", convert_args->ascii,
                    "Escape non-ASCII characters as \\uXXXX (Python's json.dumps default)");
  convert
      ->add_option("--indent", convert_args->indent,
                   "JSON arrays: indent by N spaces (default: the whole array on one line, as "
                   "Python's json.dump)")
      ->check(CLI::Range(-1, 16));
  convert->add_flag("--no-final-newline", convert_args->no_final_newline,
                    "Do not end the file with a newline");
  convert->footer(formats_footer());
  convert->callback([convert_args] { run_convert(*convert_args); });

  auto stats_args = std::make_shared<StatsArgs>();
  CLI::App* stats = cmd.add_subcommand("stats",
                                       "Records, empty inputs, duplicates and length distributions "
                                       "(characters, words) of a dataset");
  stats->add_option("file", stats_args->file, "Dataset file")->required()->check(CLI::ExistingFile);
  stats->add_option("--from", stats_args->from,
                    "Input format (default: detected from the content)");
  stats
      ->add_option("--on-error", stats_args->on_error,
                   "Bad records: stop at the first, or skip and report")
      ->check(CLI::IsMember({"stop", "skip"}));
  stats->add_flag("--json", stats_args->json, "Print JSON instead of a table");
  stats
      ->add_option(
          "--tokenizer", stats_args->tokenizer,
          "Also count tokens (no special tokens added) with this tokenizer: a model folder, "
          "tokenizer.json, SentencePiece .model or llama2.c tokenizer.bin")
      ->check(CLI::ExistingPath);
  stats->footer(formats_footer());
  stats->callback([stats_args] { run_stats(*stats_args); });
}

}  // namespace
SEQIT_COMMAND("data", "Instruction data: convert between formats, dataset statistics", setup);
}  // namespace seqit::cli
