// Tokenizer throughput on War and Peace (3.2 MB): seqit single-threaded per tokenizer, batch
// encoding on 1 and 2 threads (ThreadPool), next to transformers.js (its tokenizer engine
// @huggingface/tokenizers, the npm oracle) encoding the same text in the same run.
//   bench_tokenizer [--text FILE] [--no-oracle]
// Run from the repository root or anywhere: the oracle script and build/oracles are found next to
// the executable's build folder.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "tokenizer/batch.h"
#include "tokenizer/tokenizer.h"
#include "util/json_io.h"
#include "util/thread_pool.h"

namespace fs = std::filesystem;
using namespace seqit;

namespace {
struct Model {
  const char* name;
  const char* tokenizer_json;
  const char* config_json;
  // transformers.js merges SentencePiece-style text (no pre-tokenizer) as one word, which takes it
  // minutes on the whole book; it is timed on this many leading bytes instead (0 = all).
  size_t oracle_bytes;
};
const Model kModels[] = {
    {"gpt2", "tokenizers/gpt2/tokenizer.json", "tokenizers/gpt2/tokenizer_config.json", 0},
    {"llama3", "tokenizers/llama3/tokenizer.json", "tokenizers/llama3/tokenizer_config.json", 0},
    {"llama2", "tokenizers/llama2/tokenizer.json", "tokenizers/llama2/tokenizer_config.json",
     320000},
    {"qwen", "tokenizers/qwen/qwen3_tokenizer.json", "tokenizers/qwen/qwen3_tokenizer_config.json",
     0},
};

double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  fs::path data = std::getenv("SEQIT_SHARED_DATA") ? fs::path(std::getenv("SEQIT_SHARED_DATA"))
                                                   : fs::path(SEQIT_SHARED_DATA_DEFAULT);
  fs::path text_path = data / "text/war-and-peace.txt";
  bool oracle = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--text" && i + 1 < argc)
      text_path = argv[++i];
    else if (a == "--no-oracle")
      oracle = false;
    else {
      const bool help = a == "--help" || a == "-h";
      std::fprintf(
          help ? stdout : stderr,
          "usage: bench_tokenizer [--text FILE] [--no-oracle]\n"
          "Tokenizer throughput on FILE (default: War and Peace from the shared data), next to\n"
          "transformers.js (@huggingface/tokenizers) in the same run unless --no-oracle.\n");
      return help ? 0 : 2;
    }
  }
  const std::string text = slurp(text_path);
  const double mb = double(text.size()) / 1e6;
  // Documents for batch encoding: the text cut at blank lines into paragraphs.
  std::vector<std::string_view> docs;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find("\n\n", pos);
    end = end == std::string::npos ? text.size() : end + 2;
    docs.push_back(std::string_view(text).substr(pos, end - pos));
    pos = end;
  }

  // transformers.js in the same run (one node process; it reports its own encode time).
  std::map<std::string, double> oracle_mbps;
  std::map<std::string, std::vector<tokenizer::TokenId>> oracle_ids;
  if (oracle) {
    fs::path root = bench::repository_root();
    fs::path dir =
        fs::temp_directory_path() / ("seqit-bench-tokenizer-" + std::to_string(::getpid()));
    fs::create_directories(dir / "models");
    std::string names;
    for (const Model& m : kModels) {
      fs::create_directories(dir / "models" / m.name);
      fs::create_symlink(fs::absolute(data / m.tokenizer_json),
                         dir / "models" / m.name / "tokenizer.json");
      fs::create_symlink(fs::absolute(data / m.config_json),
                         dir / "models" / m.name / "tokenizer_config.json");
      names += (names.empty() ? "" : ",") + std::string(m.name);
      if (m.oracle_bytes) names += ":" + std::to_string(m.oracle_bytes);
    }
    std::string cmd = "SEQIT_ORACLE_DIR='" + (root / "build/oracles").string() + "' node '" +
                      (root / "tests/tokenizer/oracle.mjs").string() + "' bench '" +
                      (dir / "models").string() + "' '" + fs::absolute(text_path).string() + "' " +
                      names + " '" + (dir / "out.json").string() + "'";
    if (std::system(cmd.c_str()) == 0) {
      auto out = read_json_file(dir / "out.json");
      for (const Model& m : kModels) {
        oracle_mbps[m.name] =
            double(out[m.name]["bytes"].get<size_t>()) / 1e6 / out[m.name]["seconds"].get<double>();
        oracle_ids[m.name] = out[m.name]["ids"].get<std::vector<tokenizer::TokenId>>();
      }
    } else {
      std::fprintf(stderr,
                   "bench_tokenizer: the transformers.js oracle did not run (scripts/oracles "
                   "installs it)\n");
    }
    fs::remove_all(dir);
  }

  std::printf("Tokenizer encode throughput, %s (%.2f MB, %zu paragraphs), MB/s\n",
              text_path.filename().c_str(), mb, docs.size());
  std::printf("%-8s %9s %12s %10s %12s %12s %8s %16s %8s %s\n", "model", "tokens", "seqit 1 thr",
              "(cpu time)", "batch 1 thr", "batch 2 thr", "scaling", "transformers.js", "vs js",
              "same ids as js");
  tokenizer::EncodeOptions plain{.add_special = false, .parse_special = true};
  ThreadPool one(1), two(2);
  for (const Model& m : kModels) {
    auto tok = tokenizer::load_tokenizer(data / m.tokenizer_json);
    tok->encode(text.substr(0, 100000), plain);  // warm up, as the oracle does
    // Best of three: other processes on the machine only ever slow a run down.
    double single = 0, single_cpu = 0;
    std::vector<tokenizer::TokenId> ids;
    for (int rep = 0; rep < 3; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      double c0 = thread_cpu_seconds();
      ids = tok->encode(text, plain);
      single_cpu = std::max(single_cpu, mb / (thread_cpu_seconds() - c0));
      single = std::max(single, mb / seconds_since(t0));
    }
    // Our ids for the oracle's (possibly shorter) text.
    std::vector<tokenizer::TokenId> ids_for_oracle = ids;
    if (m.oracle_bytes) {
      size_t cut = std::min(m.oracle_bytes, text.size());
      while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
      ids_for_oracle = tok->encode(text.substr(0, cut), plain);
    }
    auto t0 = std::chrono::steady_clock::now();
    auto b1 = tokenizer::encode_batch(*tok, docs, plain, one);
    double batch1 = mb / seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    auto b2 = tokenizer::encode_batch(*tok, docs, plain, two);
    double batch2 = mb / seconds_since(t0);
    bool batches_agree = b1 == b2;
    double js = oracle_mbps.count(m.name) ? oracle_mbps[m.name] : 0;
    std::printf(
        "%-8s %9zu %12.2f %10.2f %12.2f %12.2f %7.2fx %15.2f%s %7.2fx %s%s\n", m.name, ids.size(),
        single, single_cpu, batch1, batch2, batch2 / batch1, js, m.oracle_bytes ? "*" : " ",
        js > 0 ? single / js : 0.0,
        oracle_ids.count(m.name) ? (oracle_ids[m.name] == ids_for_oracle ? "yes" : "NO") : "-",
        batches_agree ? "" : " (batch results differ!)");
  }
  std::printf(
      "* transformers.js timed on the first %zu KB (it merges Llama-2 text as a single word; the "
      "whole\n"
      "  book takes it minutes)\n",
      kModels[2].oracle_bytes / 1000);
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) > 0)
    std::printf("load average while running: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  return 0;
}
