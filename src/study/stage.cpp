#include "study/stage.h"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_io.h"

namespace seqit::study {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string key_hash(const json& key) {
  // nlohmann::json (not ordered_json) keeps object keys sorted: the dump is canonical.
  const std::string text = json(key).dump();
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", h);
}

StageStore::StageStore(fs::path root) : root_(std::move(root)) {
  fs::create_directories(root_ / "stages");
}

StageInfo StageStore::info(const std::string& name, const json& key) const {
  StageInfo s;
  s.name = name;
  s.hash = key_hash(key);
  s.dir = root_ / "stages" / fmt::format("{}-{}", name, s.hash);
  const fs::path done = s.dir / "done.json";
  s.done = fs::exists(done);
  if (s.done) {
    const json d = json::parse(read_file(done), nullptr, false);
    if (d.is_object()) s.seconds = d.value("seconds", 0.0);
  }
  return s;
}

json StageStore::summary(const StageInfo& stage) const {
  const fs::path done = stage.dir / "done.json";
  if (!fs::exists(done)) throw Error(fmt::format("stage {} is not done", stage.name));
  const json d = json::parse(read_file(done), nullptr, false);
  if (!d.is_object()) throw Error("corrupt done marker").in_file(done.string());
  return d.value("summary", json::object());
}

StageInfo StageStore::run(const std::string& name, const json& key,
                          const std::function<json(const fs::path& dir)>& work, json* summary_out) {
  StageInfo s = info(name, key);
  if (!s.done) {
    fs::create_directories(s.dir);
    write_file_atomic(s.dir / "key.json", json(key).dump(2) + "\n");
    const auto t0 = std::chrono::steady_clock::now();
    json result = work(s.dir);
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_file_atomic(
        s.dir / "done.json",
        json{{"stage", name}, {"seconds", s.seconds}, {"summary", result}}.dump(2) + "\n");
    s.done = true;
    if (summary_out) *summary_out = std::move(result);
  } else if (summary_out) {
    *summary_out = summary(s);
  }
  return s;
}

void StageStore::plan(const std::vector<std::pair<std::string, json>>& stages) {
  json manifest = json::array();
  for (const auto& [name, key] : stages)
    manifest.push_back({{"name", name}, {"hash", key_hash(key)}, {"key", key}});
  write_file_atomic(root_ / "manifest.json", manifest.dump(2) + "\n");
}

std::vector<StageInfo> StageStore::status() const {
  std::vector<StageInfo> out;
  const fs::path path = root_ / "manifest.json";
  if (!fs::exists(path)) return out;
  const json manifest = json::parse(read_file(path), nullptr, false);
  if (!manifest.is_array()) throw Error("corrupt manifest").in_file(path.string());
  for (const json& stage : manifest) out.push_back(info(stage.at("name"), stage.at("key")));
  return out;
}

}  // namespace seqit::study
