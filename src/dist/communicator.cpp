#include "dist/communicator.h"

#include <fmt/format.h>

#include <cstdlib>
#include <memory>

#include "util/error.h"

#ifdef SEQIT_HAVE_MPI
#include <mpi.h>
#endif

namespace seqit::dist {
namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "1 process"; }
  void allreduce_sum(std::span<float>) override {}
  void allreduce_sum(std::span<double>) override {}
  void allreduce_max(std::span<double>) override {}
  int start_allreduce_sum(std::span<float>) override { return 0; }
  bool test(int) override { return true; }
  void wait(int) override {}
  std::vector<std::string> allgather(const std::string& bytes) override { return {bytes}; }
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

#ifdef SEQIT_HAVE_MPI
// MPI errors end the job (MPI_ERRORS_ARE_FATAL, the default): a peer that died makes the launcher
// kill the rest and name the rank, which is what a training job wants. Counts above INT_MAX are
// sent in pieces.
constexpr int64_t kMaxCount = int64_t{1} << 30;

class Mpi final : public Communicator {
 public:
  Mpi() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    library_ = std::string(version, static_cast<size_t>(length));
    if (const size_t comma = library_.find(','); comma != std::string::npos)
      library_.resize(comma);  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
    while (!library_.empty() && (library_.back() == '\n' || library_.back() == ' '))
      library_.pop_back();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    return fmt::format("MPI: {} processes ({})", size_, library_);
  }
  void allreduce_sum(std::span<float> data) override {
    reduce(data.data(), data.size(), MPI_FLOAT, MPI_SUM);
  }
  void allreduce_sum(std::span<double> data) override {
    reduce(data.data(), data.size(), MPI_DOUBLE, MPI_SUM);
  }
  void allreduce_max(std::span<double> data) override {
    reduce(data.data(), data.size(), MPI_DOUBLE, MPI_MAX);
  }

  int start_allreduce_sum(std::span<float> data) override {
    Pending p;
    for (size_t at = 0; at < data.size(); at += static_cast<size_t>(kMaxCount)) {
      const auto n = static_cast<int>(std::min<size_t>(data.size() - at, kMaxCount));
      MPI_Request request;
      MPI_Iallreduce(MPI_IN_PLACE, data.data() + at, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                     &request);
      p.requests.push_back(request);
    }
    pending_.push_back(std::move(p));
    return static_cast<int>(pending_.size()) - 1;
  }
  bool test(int handle) override {
    Pending& p = at(handle);
    int done = 1;
    if (!p.requests.empty()) {
      MPI_Testall(static_cast<int>(p.requests.size()), p.requests.data(), &done,
                  MPI_STATUSES_IGNORE);
    }
    if (done) p.requests.clear();
    return done != 0;
  }
  void wait(int handle) override {
    Pending& p = at(handle);
    if (!p.requests.empty())
      MPI_Waitall(static_cast<int>(p.requests.size()), p.requests.data(), MPI_STATUSES_IGNORE);
    p.requests.clear();
    p.waited = true;
    // Handles are indices: drop them all once every started sum has been waited for.
    bool all = true;
    for (const Pending& q : pending_) all = all && q.waited;
    if (all) pending_.clear();
  }

  std::vector<std::string> allgather(const std::string& bytes) override {
    int mine = static_cast<int>(bytes.size());
    std::vector<int> sizes(static_cast<size_t>(size_));
    MPI_Allgather(&mine, 1, MPI_INT, sizes.data(), 1, MPI_INT, MPI_COMM_WORLD);
    std::vector<int> offsets(sizes.size());
    int total = 0;
    for (size_t i = 0; i < sizes.size(); ++i) offsets[i] = total, total += sizes[i];
    std::string all(static_cast<size_t>(total), '\0');
    MPI_Allgatherv(bytes.data(), mine, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR,
                   MPI_COMM_WORLD);
    std::vector<std::string> out;
    for (size_t i = 0; i < sizes.size(); ++i)
      out.push_back(all.substr(static_cast<size_t>(offsets[i]), static_cast<size_t>(sizes[i])));
    return out;
  }
  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  struct Pending {
    std::vector<MPI_Request> requests;
    bool waited = false;
  };
  Pending& at(int handle) {
    if (handle < 0 || handle >= static_cast<int>(pending_.size()) || pending_[handle].waited)
      throw Error(fmt::format("dist: no pending collective {}", handle));
    return pending_[static_cast<size_t>(handle)];
  }
  void reduce(void* data, size_t count, MPI_Datatype type, MPI_Op op) {
    int bytes = 0;
    MPI_Type_size(type, &bytes);
    for (size_t at = 0; at < count; at += static_cast<size_t>(kMaxCount)) {
      const auto n = static_cast<int>(std::min<size_t>(count - at, kMaxCount));
      MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + at * static_cast<size_t>(bytes), n,
                    type, op, MPI_COMM_WORLD);
    }
  }

  int rank_ = 0, size_ = 1;
  std::string library_;
  std::vector<Pending> pending_;
};
#endif

std::unique_ptr<Communicator>& world_slot() {
  static std::unique_ptr<Communicator> world;
  return world;
}
[[maybe_unused]] bool g_mpi_started = false;

}  // namespace

bool launched_by_mpi() {
  // Open MPI's mpirun, MPICH/Hydra's mpiexec (PMI_RANK), and srun with PMI or PMIx.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

bool built_with_mpi() {
#ifdef SEQIT_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void init_world(int* argc, char*** argv) {
  if (world_slot()) return;
  if (!launched_by_mpi()) {
    world_slot() = std::make_unique<SingleProcess>();
    return;
  }
#ifdef SEQIT_HAVE_MPI
  int provided = 0;
  // One thread calls MPI (the main one); compute threads never do.
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  g_mpi_started = true;
  world_slot() = std::make_unique<Mpi>();
#else
  (void)argc;
  (void)argv;
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (size != nullptr && std::string(size) != "1")
    throw Error(
        "this seqit was built without MPI, and mpirun started it as one of several processes: "
        "install libopenmpi-dev and openmpi-bin (scripts/setup does) and rebuild");
  world_slot() = std::make_unique<SingleProcess>();
#endif
}

Communicator& world() {
  if (!world_slot()) return single_process();
  return *world_slot();
}

Communicator& single_process() {
  static SingleProcess one;
  return one;
}

void finalize_world() {
#ifdef SEQIT_HAVE_MPI
  if (g_mpi_started) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
#endif
}

}  // namespace seqit::dist
