// The study as a small DAG of cached stages. A stage is a name and the JSON of everything its
// output depends on (its settings and the keys of the stages it reads); its folder is
// stages/<name>-<hash of that JSON>, and it is done when that folder holds done.json (written
// atomically, last). So a rerun after a crash or kill -9 redoes only unfinished stages, a changed
// setting gives the affected stages new folders (the old results stay, and come back if the setting
// is changed back), and `seqit study status` reads the state from the folders alone.
//
// A stage that is cut off mid-way reruns in the same folder: its work function must resume (the
// trainer's --resume, resumable JSONL results) or start over cleanly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace seqit::study {

struct StageInfo {
  std::string name;  // "train-sit-seed1"
  std::string hash;  // 16 hex digits of the key
  std::filesystem::path dir;
  bool done = false;
  double seconds = 0;  // how long the work took (from done.json; 0 when not done)
};

class StageStore {
 public:
  explicit StageStore(std::filesystem::path root);
  const std::filesystem::path& root() const { return root_; }

  // The stage's folder and state for `key` (any JSON; compared canonically: key order does not
  // matter).
  StageInfo info(const std::string& name, const nlohmann::json& key) const;
  // Runs `work(dir)` unless the stage is done; then marks it done with `summary` (what work
  // returned) and the time taken. Returns the stage's info and the summary (read back from
  // done.json when it was already done). The stage is recorded in the store's manifest, in order.
  StageInfo run(const std::string& name, const nlohmann::json& key,
                const std::function<nlohmann::json(const std::filesystem::path& dir)>& work,
                nlohmann::json* summary = nullptr);
  // The summary a done stage recorded.
  nlohmann::json summary(const StageInfo& stage) const;

  // The stages of the last planned run, in order, with their state now (manifest.json).
  std::vector<StageInfo> status() const;
  // Records the planned stages (name + key), so that status() can list them before they run.
  void plan(const std::vector<std::pair<std::string, nlohmann::json>>& stages);

 private:
  std::filesystem::path root_;
};

// 16 hex digits identifying `key` (FNV-1a 64 over its canonical, sorted-key dump).
std::string key_hash(const nlohmann::json& key);

}  // namespace seqit::study
