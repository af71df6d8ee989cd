// `seqit tokenize`: token ids, token strings or a token count for a text, with any tokenizer format
// seqit reads (tokenizer.json, tokenizer.model, llama2.c tokenizer.bin, GGUF).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::cli {
namespace {

struct Options {
  std::string tokenizer_path;
  std::string input;  // empty or "-" = stdin
  bool ids = false, tokens = false, count = false, add_special = false, no_parse_special = false,
       describe = false;
};

std::string read_input(const std::string& path) {
  if (path.empty() || path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open the input text").in_file(path);
  std::string text;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) throw Error("cannot read the input text").in_file(path);
  return text;
}

void run(const Options& o) {
  auto tok = tokenizer::load_tokenizer(o.tokenizer_path);
  if (o.describe) {
    std::printf("%s\nvocab size: %zu\n", tok->describe().c_str(), tok->vocab_size());
    if (auto b = tok->bos_id()) std::printf("bos: %d %s\n", *b, tok->token_text(*b).c_str());
    if (auto e = tok->eos_id()) std::printf("eos: %d %s\n", *e, tok->token_text(*e).c_str());
    return;
  }
  std::string text = read_input(o.input);
  tokenizer::EncodeOptions options{.add_special = o.add_special,
                                   .parse_special = !o.no_parse_special};
  auto ids = tok->encode(text, options);
  if (o.count) {
    std::printf("%zu\n", ids.size());
  } else if (o.tokens) {
    // One JSON string per line: tokens may hold spaces, newlines or bytes that are not text.
    for (auto id : ids)
      std::printf("%s\n", nlohmann::json(tok->token_text(id))
                              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                              .c_str());
  } else {
    std::string line;
    for (size_t k = 0; k < ids.size(); ++k) {
      if (k) line += ' ';
      line += std::to_string(ids[k]);
    }
    std::printf("%s\n", line.c_str());
  }
}

void setup(CLI::App& cmd) {
  auto o = std::make_shared<Options>();
  cmd.description(
      "Tokenize a text (FILE, or standard input) with a model's tokenizer and print the token ids "
      "(the "
      "default), the tokens as JSON strings one per line (--tokens), or how many tokens there are "
      "(--count).\n"
      "TOKENIZER is a tokenizer.json (with tokenizer_config.json beside it when present), a "
      "SentencePiece "
      ".model, a llama2.c tokenizer.bin, a GGUF file, or a model folder holding one of them.");
  cmd.add_option("--tokenizer", o->tokenizer_path, "Tokenizer file or model folder")->required();
  cmd.add_option("file", o->input, "Text file to tokenize (default: standard input)");
  auto* ids = cmd.add_flag("--ids", o->ids, "Print token ids separated by spaces (default)");
  auto* tokens =
      cmd.add_flag("--tokens", o->tokens, "Print each token as a JSON string, one per line");
  auto* count = cmd.add_flag("--count", o->count, "Print only the number of tokens");
  ids->excludes(tokens)->excludes(count);
  tokens->excludes(count);
  cmd.add_flag("--add-special", o->add_special,
               "Add the tokens the tokenizer adds around a text (e.g. BOS)");
  cmd.add_flag("--no-parse-special", o->no_parse_special,
               "Tokenize special-token text such as \"<|eot_id|>\" as plain text");
  cmd.add_flag("--describe", o->describe,
               "Print the tokenizer's format, vocabulary size and BOS/EOS, then exit");
  cmd.callback([o] { run(*o); });
}

}  // namespace
SEQIT_COMMAND("tokenize", "Tokenize text with a model's tokenizer (ids, tokens or a count)", setup);
}  // namespace seqit::cli
