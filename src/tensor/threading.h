// The compute threads: one OpenMP pool, shared by seqit's kernels and oneDNN (which is built on the
// same libgomp). Every op applies the configured count on the calling thread before it runs, so the
// setting holds for ops called from any thread (e.g. an HTTP handler thread in `seqit serve`).
#pragma once

namespace seqit::tensor {

// n <= 0 means one thread per available core. Honoured by every op from the next call on.
void set_num_threads(int n);
int num_threads();

// The OpenMP wait policy in force for this process (what libgomp read at start-up), for logs and
// benchmarks: e.g. "GOMP_SPINCOUNT=10000 (seqit default)" or "OMP_WAIT_POLICY=active (user)".
const char* openmp_wait_policy();

// For an executable's main(), before anything else runs: unless the environment already chooses an
// OpenMP wait policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT) or SEQIT_OPENMP_REEXEC=0, re-executes the
// process once with a short spin (GOMP_SPINCOUNT=10000) so idle workers stop burning cores between
// regions; see docs/engine.md. Returns only when no re-execution happened. Libraries never call it.
void establish_openmp_wait_policy(char** argv);

}  // namespace seqit::tensor
