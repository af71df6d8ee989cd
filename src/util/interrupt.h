// Stopping long jobs cleanly on Ctrl-C / SIGTERM: while an InterruptGuard lives, the first SIGINT
// or SIGTERM only raises a flag that the job polls at a safe point (e.g. between optimiser steps)
// to save its state and return; a second one ends the process at once, as usual. The previous
// handlers are restored when the guard goes away. Guards may live at the same time on several
// threads: they share one flag, set up by the first and torn down by the last.
#pragma once

namespace seqit {

class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // Whether a stop was asked for since the guard was made, and which signal (0 = none).
  bool requested() const;
  int signal() const;
};

}  // namespace seqit
