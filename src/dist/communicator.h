// The processes of one job and the collectives between them: what data-parallel training and
// sharded jobs need, and nothing else. Two implementations: a world of one process (every
// collective is the identity; the default) and MPI (Open MPI; mpirun or srun starts the processes).
// A NCCL implementation for GPUs can fill the same interface.
//
// Rules every caller keeps (MPI's): every rank calls the same collectives in the same order with
// the same counts; a buffer handed to start_allreduce_sum stays untouched until its wait().
// Collectives are called from one thread (the one that called init_world).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace seqit::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "1 process" or "MPI: 2 processes (Open MPI v4.1.4)".
  virtual std::string describe() const = 0;

  // Element-wise sum over every rank, in place. The result is the same bits on every rank; with a
  // fixed rank count, the same bits run to run.
  virtual void allreduce_sum(std::span<float> data) = 0;
  virtual void allreduce_sum(std::span<double> data) = 0;
  virtual void allreduce_max(std::span<double> data) = 0;
  // The same sum started without waiting for it: the work goes on while it progresses. Returns a
  // handle for test()/wait(); every started sum must be waited for.
  virtual int start_allreduce_sum(std::span<float> data) = 0;
  // Lets started sums progress; true when `handle`'s is complete (it still needs its wait()).
  virtual bool test(int handle) = 0;
  virtual void wait(int handle) = 0;

  // Every rank's bytes, in rank order.
  virtual std::vector<std::string> allgather(const std::string& bytes) = 0;
  virtual void barrier() = 0;
  // Ends every process of the job with `code` (an error that only this rank has seen: the others
  // would wait for it forever). Does not return.
  [[noreturn]] virtual void abort(int code) = 0;
};

// True when an MPI launcher started this process (mpirun/mpiexec of Open MPI or MPICH, srun with
// PMI/PMIx): the environment says so.
bool launched_by_mpi();
// Whether this build has MPI (libopenmpi-dev found at configure time).
bool built_with_mpi();

// Sets up the world of this process: MPI when launched_by_mpi() (seqit::Error when this build has
// no MPI), else a world of one. Called once, first thing in main(); idempotent.
void init_world(int* argc, char*** argv);
// The world (a world of one when init_world was never called: libraries and tests).
Communicator& world();
// MPI_Finalize where MPI was started; call once at a normal exit.
void finalize_world();

// A world of one, for tests and for code that must not talk to other ranks.
Communicator& single_process();

}  // namespace seqit::dist
