#include "study/recipe.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fnmatch.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "study/stage.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/interrupt.h"

namespace seqit::study {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Markers of the symbolic form of a command line (the stage key): replaced by real paths last.
constexpr char kMark = '\x01';

// A param or foreach value: a string or a list of strings.
struct Value {
  bool is_list = false;
  bool required = false;  // null in the recipe and not set on the command line
  std::string text;
  std::vector<std::string> items;
  std::string as_text() const {
    return is_list ? fmt::format("[{}]", fmt::join(items, ",")) : text;
  }
};

Error at_node(const fs::path& file, const YAML::Node& node, const std::string& field,
              const std::string& message) {
  Error e(message);
  e.in_file(file.string());
  if (node.IsDefined() && node.Mark().line >= 0)
    e.at_line(node.Mark().line + 1, node.Mark().column + 1);
  if (!field.empty()) e.in_field(field);
  return e;
}

Value value_of(const fs::path& file, const YAML::Node& node, const std::string& field) {
  Value v;
  if (!node.IsDefined() || node.IsNull()) {
    v.required = true;
  } else if (node.IsScalar()) {
    v.text = node.Scalar();
  } else if (node.IsSequence()) {
    v.is_list = true;
    for (const auto& item : node) {
      if (!item.IsScalar()) throw at_node(file, item, field, "a list of plain values expected");
      v.items.push_back(item.Scalar());
    }
  } else {
    throw at_node(file, node, field, "a value or a list of values expected, not a map");
  }
  return v;
}

struct Scope {
  const std::map<std::string, Value>& params;
  const std::map<std::string, std::string>& vars;
  const std::vector<RecipeStage>& earlier;
  std::string recipe_dir;
};

std::string shared_dir() {
  const auto found = find_shared_data("");
  if (!found)
    throw Error(
        "${shared}: no shared data folder (set SEQIT_SHARED_DATA or run next to ../shared/data)");
  return fs::weakly_canonical(*found).string();
}

std::string stage_ref(const RecipeStage& s) {
  return fmt::format("{}stage:{}-{}{}", kMark, s.name, s.hash, kMark);
}

std::string resolve(const std::string& token, const Scope& scope) {
  if (token == "out") return std::string(1, kMark) + "out" + kMark;
  if (token == "shared") return shared_dir();
  if (token == "recipe_dir") return scope.recipe_dir;
  auto matching = [&](const std::string& glob) {
    std::vector<const RecipeStage*> found;
    for (const RecipeStage& s : scope.earlier)
      if (fnmatch(glob.c_str(), s.name.c_str(), 0) == 0) found.push_back(&s);
    if (found.empty()) throw Error(fmt::format("${{{}}}: no earlier stage matches", token));
    return found;
  };
  if (token.rfind("stage:", 0) == 0) {
    const std::string name = token.substr(6);
    for (const RecipeStage& s : scope.earlier)
      if (s.name == name) return stage_ref(s);
    throw Error(fmt::format("${{{}}}: no earlier stage is named '{}'", token, name));
  }
  if (token.rfind("stages:", 0) == 0) {
    std::vector<std::string> refs;
    for (const RecipeStage* s : matching(token.substr(7))) refs.push_back(stage_ref(*s));
    return fmt::format("{}", fmt::join(refs, " "));
  }
  if (token.rfind("names:", 0) == 0) {
    std::vector<std::string> names;
    for (const RecipeStage* s : matching(token.substr(6))) names.push_back(s->name);
    return fmt::format("{}", fmt::join(names, " "));
  }
  if (auto it = scope.vars.find(token); it != scope.vars.end()) return it->second;
  if (auto it = scope.params.find(token); it != scope.params.end()) {
    if (it->second.required)
      throw Error(
          fmt::format("param '{}' is required: add {}=... to the command line", token, token));
    return it->second.as_text();
  }
  std::vector<std::string> known;
  for (const auto& [k, v] : scope.params) known.push_back(k);
  for (const auto& [k, v] : scope.vars) known.push_back(k);
  throw Error(
      fmt::format("${{{}}}: unknown (params and variables: {}; also out, shared, "
                  "recipe_dir, stage:NAME, stages:GLOB, names:GLOB)",
                  token, known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", "))));
}

// Innermost first: the last "${" has no "${" after it, so its "}" closes it.
std::string substitute(std::string text, const Scope& scope) {
  for (int rounds = 0;; ++rounds) {
    const size_t at = text.rfind("${");
    if (at == std::string::npos) return text;
    if (rounds > 10000) throw Error("${...} expands without end (a param that names itself?)");
    const size_t end = text.find('}', at);
    if (end == std::string::npos) throw Error("'${' without its '}' in: " + text);
    const std::string value = resolve(text.substr(at + 2, end - at - 2), scope);
    text.replace(at, end - at + 1, value);
  }
}

// Splits a command line at blanks; '...' and "..." keep blanks inside one argument.
std::vector<std::string> split_args(const std::string& line) {
  std::vector<std::string> args;
  std::string current;
  bool in_arg = false;
  char quote = 0;
  for (char c : line) {
    if (quote) {
      if (c == quote)
        quote = 0;
      else
        current += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_arg = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_arg) args.push_back(std::move(current));
      current.clear();
      in_arg = false;
    } else {
      current += c;
      in_arg = true;
    }
  }
  if (quote) throw Error(std::string("unclosed ") + quote + " in: " + line);
  if (in_arg) args.push_back(std::move(current));
  return args;
}

// The symbolic form with real paths: ${out} -> dir, stage refs -> their folders.
std::string materialize(const std::string& symbolic, const fs::path& out, const fs::path& dir) {
  std::string text;
  for (size_t i = 0; i < symbolic.size();) {
    if (symbolic[i] != kMark) {
      text += symbolic[i++];
      continue;
    }
    const size_t end = symbolic.find(kMark, i + 1);
    const std::string ref = symbolic.substr(i + 1, end - i - 1);
    text += ref == "out" ? dir.string() : (out / "stages" / ref.substr(6)).string();
    i = end + 1;
  }
  return text;
}

bool valid_stage_name(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

std::string log_tail(const fs::path& log, int lines) {
  std::ifstream in(log);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) {
    // Progress bars drawn for a terminal: keep what the last redraw shows.
    const size_t cr = line.rfind('\r');
    all.push_back(cr == std::string::npos ? line : line.substr(cr + 1));
  }
  const size_t from = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  std::string out;
  for (size_t i = from; i < all.size(); ++i) out += "  | " + all[i] + "\n";
  return out;
}

// Runs `exe args...` with stdout and stderr appended to `log`; the child dies with this process.
// Returns the exit status (-signal when killed).
int run_child(const fs::path& exe, const std::vector<std::string>& args, const fs::path& log) {
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot write {}: {}", log.string(), std::strerror(errno)));
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  const std::string header = fmt::format("=== {} seqit {}\n", when, fmt::join(args, " "));
  if (::write(fd, header.data(), header.size()) < 0) {
    // The log is for people; a failed write of its header does not stop the stage.
  }
  std::vector<std::string> argv_s = {exe.string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(127);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(fd);
  if (pid < 0) throw Error(fmt::format("cannot start {}: {}", exe.string(), std::strerror(errno)));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      throw Error(fmt::format("waiting for {}: {}", exe.string(), std::strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
}

}  // namespace

RecipePlan plan_recipe(const fs::path& recipe, const fs::path& study_dir,
                       const std::vector<std::string>& overrides, int64_t limit) {
  if (!fs::exists(recipe)) throw Error("no such recipe: " + recipe.string());
  // Absolute: the stages' commands name each other's folders (the keys do not depend on it).
  const fs::path out = fs::absolute(study_dir).lexically_normal();
  YAML::Node root;
  try {
    root = YAML::LoadFile(recipe.string());
  } catch (const YAML::Exception& e) {
    Error err(std::string("not valid YAML: ") + e.msg);
    err.in_file(recipe.string());
    if (e.mark.line >= 0) err.at_line(e.mark.line + 1, e.mark.column + 1);
    throw err;
  }
  if (!root.IsMap())
    throw at_node(recipe, root, "", "a study recipe is a map (name, params, stages)");
  static const std::set<std::string> kTop = {"name", "about", "params", "limits", "stages"};
  for (const auto& kv : root)
    if (!kTop.count(kv.first.Scalar()))
      throw at_node(recipe, kv.first, kv.first.Scalar(),
                    "unknown key (a recipe has name, about, params, limits, stages)");

  RecipePlan plan;
  plan.name = root["name"] ? root["name"].as<std::string>() : recipe.stem().string();
  plan.about = root["about"] ? root["about"].as<std::string>() : "";

  std::map<std::string, Value> params;
  std::vector<std::string> order;
  if (const YAML::Node p = root["params"]) {
    if (!p.IsMap()) throw at_node(recipe, p, "params", "params is a map name -> value");
    for (const auto& kv : p) {
      const std::string name = kv.first.Scalar();
      params[name] = value_of(recipe, kv.second, "params." + name);
      order.push_back(name);
    }
  }
  if (limit >= 0) {
    if (const YAML::Node l = root["limits"]) {
      if (!l.IsMap()) throw at_node(recipe, l, "limits", "limits is a map param -> factor");
      for (const auto& kv : l) {
        const std::string name = kv.first.Scalar();
        if (!params.count(name))
          throw at_node(recipe, kv.first, "limits." + name, "not a param of this recipe");
        double factor = 0;
        try {
          factor = kv.second.as<double>();
        } catch (const YAML::Exception&) {
          throw at_node(recipe, kv.second, "limits." + name, "a number expected");
        }
        Value v;
        v.text = std::to_string(std::llround(static_cast<double>(limit) * factor));
        params[name] = v;
      }
    } else {
      throw at_node(recipe, root, "limits",
                    "this recipe declares no limits: --limit does nothing here");
    }
  }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    if (eq == std::string::npos) throw Error("a recipe param is key=value, not '" + o + "'");
    const std::string key = o.substr(0, eq);
    if (!params.count(key)) {
      throw Error(fmt::format("{}: no param '{}' (params: {})", recipe.string(), key,
                              fmt::join(order, ", ")));
    }
    YAML::Node node;
    try {
      node = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::Exception&) {
      node = YAML::Node(o.substr(eq + 1));
    }
    if (node.IsMap()) node = YAML::Node(o.substr(eq + 1));  // "a: b" text is a string here
    params[key] = value_of(recipe, node, key);
    if (params[key].required) params[key].text.clear(), params[key].required = false;
  }

  const YAML::Node stages = root["stages"];
  if (!stages || !stages.IsSequence() || stages.size() == 0)
    throw at_node(recipe, stages ? stages : root, "stages", "stages is a non-empty list");
  const std::string recipe_dir = fs::weakly_canonical(fs::absolute(recipe)).parent_path().string();
  const std::map<std::string, std::string> no_vars;
  std::set<std::string> names;
  for (size_t si = 0; si < stages.size(); ++si) {
    const YAML::Node st = stages[si];
    const std::string field = fmt::format("stages[{}]", si);
    if (!st.IsMap() || !st["name"] || !st["run"])
      throw at_node(recipe, st, field, "a stage is a map with name and run (and foreach)");
    for (const auto& kv : st) {
      const std::string k = kv.first.Scalar();
      if (k != "name" && k != "run" && k != "foreach")
        throw at_node(recipe, kv.first, field + "." + k, "unknown key (name, run, foreach)");
    }
    // The foreach variables and their values (lists of params expand).
    std::vector<std::pair<std::string, std::vector<std::string>>> loops;
    if (const YAML::Node fe = st["foreach"]) {
      if (!fe.IsMap())
        throw at_node(recipe, fe, field + ".foreach", "foreach is a map var -> list");
      for (const auto& kv : fe) {
        const std::string var = kv.first.Scalar();
        const std::string vfield = field + ".foreach." + var;
        std::vector<std::string> values;
        try {
          const Scope scope{params, no_vars, plan.stages, recipe_dir};
          if (kv.second.IsSequence()) {
            for (const auto& item : kv.second) values.push_back(substitute(item.Scalar(), scope));
          } else if (kv.second.IsScalar()) {
            const std::string text = kv.second.Scalar();
            const bool whole = text.size() > 3 && text.rfind("${", 0) == 0 && text.back() == '}' &&
                               text.find("${", 2) == std::string::npos;
            const auto p = whole ? params.find(text.substr(2, text.size() - 3)) : params.end();
            if (p != params.end() && p->second.is_list) {
              values = p->second.items;
            } else {
              // A list written out ("[a,b]", or a list param inside other text) reads as YAML.
              const std::string s = substitute(text, scope);
              YAML::Node list;
              if (s.size() >= 2 && s.front() == '[' && s.back() == ']') {
                try {
                  list = YAML::Load(s);
                } catch (const YAML::Exception& e) {
                  throw Error("not a list: " + s + " (" + e.msg + ")");
                }
              }
              if (list.IsSequence())
                values = value_of(recipe, list, vfield).items;
              else
                values.push_back(s);
            }
          } else {
            throw Error("a list or ${a list param} expected");
          }
        } catch (const Error& e) {
          throw at_node(recipe, kv.second, vfield, e.what());
        }
        if (values.empty()) throw at_node(recipe, kv.second, vfield, "an empty list");
        loops.emplace_back(var, std::move(values));
      }
    }
    // Every combination, the first variable outermost.
    std::vector<size_t> index(loops.size(), 0);
    for (bool more = true; more;) {
      std::map<std::string, std::string> vars;
      for (size_t i = 0; i < loops.size(); ++i) vars[loops[i].first] = loops[i].second[index[i]];
      const Scope scope{params, vars, plan.stages, recipe_dir};
      RecipeStage stage;
      try {
        stage.name = substitute(st["name"].Scalar(), scope);
      } catch (const Error& e) {
        throw at_node(recipe, st["name"], field + ".name", e.what());
      }
      if (!valid_stage_name(stage.name))
        throw at_node(
            recipe, st["name"], field + ".name",
            fmt::format("stage name '{}': letters, digits, '-', '_' and '.' only", stage.name));
      if (!names.insert(stage.name).second)
        throw at_node(recipe, st["name"], field + ".name",
                      fmt::format("two stages are named '{}'", stage.name));
      std::vector<std::string> symbolic;
      try {
        symbolic = split_args(substitute(st["run"].Scalar(), scope));
      } catch (const Error& e) {
        throw at_node(recipe, st["run"], field + ".run",
                      fmt::format("stage {}: {}", stage.name, e.what()));
      }
      if (symbolic.empty())
        throw at_node(recipe, st["run"], field + ".run", "an empty command line");
      const json key = {{"run", symbolic}};
      stage.key = key.dump();
      stage.hash = key_hash(key);
      stage.dir = out / "stages" / fmt::format("{}-{}", stage.name, stage.hash);
      for (const std::string& a : symbolic) stage.args.push_back(materialize(a, out, stage.dir));
      plan.stages.push_back(std::move(stage));
      // Next combination (odometer, last variable fastest).
      more = false;
      for (size_t i = loops.size(); i-- > 0;) {
        if (++index[i] < loops[i].second.size()) {
          more = true;
          break;
        }
        index[i] = 0;
      }
    }
  }
  for (const std::string& name : order) {
    const Value& v = params[name];
    if (v.required) plan.missing.push_back(name);
    std::string shown = v.required ? "(required, not set)" : v.as_text();
    if (!v.required) {
      try {  // as the stages see it (${shared}, ${recipe_dir}, other params filled in)
        const std::vector<RecipeStage> none;
        shown = materialize(substitute(shown, Scope{params, no_vars, none, recipe_dir}), out, out);
      } catch (const Error&) {
        // Shown as written when it cannot be resolved on its own (e.g. it names ${out}).
      }
    }
    plan.params.emplace_back(name, shown);
  }
  return plan;
}

RecipePlan run_recipe_study(const fs::path& recipe, const fs::path& out,
                            const std::vector<std::string>& overrides, int64_t limit,
                            const RecipeRunOptions& options) {
  RecipePlan plan = plan_recipe(recipe, out, overrides, limit);
  if (!plan.missing.empty())
    throw Error(fmt::format("{}: param '{}' is required: add {}=... to the command line",
                            recipe.string(), plan.missing.front(), plan.missing.front()));
  StageStore store(out);
  std::vector<std::pair<std::string, json>> manifest;
  for (const RecipeStage& s : plan.stages) manifest.emplace_back(s.name, json::parse(s.key));
  store.plan(manifest);
  json params = json::object();
  for (const auto& [name, value] : plan.params) params[name] = value;
  write_file_atomic(
      out / "recipe.json",
      json{{"recipe", fs::absolute(recipe).string()}, {"name", plan.name}, {"params", params}}.dump(
          2) +
          "\n");

  InterruptGuard interrupt;
  std::vector<double> seconds;  // per stage, for the report
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const RecipeStage& s = plan.stages[i];
    const json& key = manifest[i].second;
    const StageInfo info = store.info(s.name, key);
    if (options.stage_started) options.stage_started(s, info.done, i + 1, plan.stages.size());
    seconds.push_back(info.seconds);
    if (info.done) continue;
    if (interrupt.requested())
      throw Error("stopped (Ctrl-C or SIGTERM) before stage " + s.name +
                  "; rerun the same command to continue");
    const StageInfo done = store.run(s.name, key, [&](const fs::path& dir) {
      const fs::path log = dir / "log.txt";
      std::vector<std::string> args = options.global_args;
      args.insert(args.end(), s.args.begin(), s.args.end());
      const int status = run_child(options.executable, args, log);
      if (interrupt.requested())
        throw Error(
            fmt::format("stopped (Ctrl-C or SIGTERM) in stage {}; what it did is saved: "
                        "rerun the same command to continue (log: {})",
                        s.name, log.string()));
      if (status != 0)
        throw Error(fmt::format(
            "stage {} failed ({}): seqit {}\nlog: {}\n{}", s.name,
            status > 0 ? fmt::format("exit {}", status) : fmt::format("signal {}", -status),
            fmt::join(s.args, " "), log.string(), log_tail(log, 15)));
      return json{{"command", fmt::format("seqit {}", fmt::join(s.args, " "))}};
    });
    seconds.back() = done.seconds;
    if (options.stage_done) options.stage_done(s, done.seconds);
  }

  // report.md: the settings, the stages, and every comparison the stages wrote.
  std::string md = fmt::format(
      "# Study `{}`\n\n{}\n\nRecipe: `{}`\n\n## Params\n\n| param | value |\n|---|---|\n",
      plan.name, plan.about, fs::absolute(recipe).string());
  for (const auto& [name, value] : plan.params) md += fmt::format("| {} | `{}` |\n", name, value);
  md += "\n## Stages\n\n| stage | took | folder |\n|---|---|---|\n";
  for (size_t i = 0; i < plan.stages.size(); ++i)
    md += fmt::format("| {} | {:.1f} s | `{}` |\n", plan.stages[i].name, seconds[i],
                      fs::relative(plan.stages[i].dir, out).string());
  for (const RecipeStage& s : plan.stages) {
    const fs::path compare = s.dir / "compare.md";
    if (!fs::exists(compare)) continue;
    std::string body = read_file(compare);
    // Its headings one level down, under the stage's name.
    std::string shifted;
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);)
      shifted += (line.rfind("#", 0) == 0 ? "##" + line : line) + "\n";
    md += fmt::format("\n## {}\n\n{}", s.name, shifted);
  }
  write_file_atomic(out / "report.md", md);
  return plan;
}

}  // namespace seqit::study
