#!/usr/bin/env python3
"""Prints the lr table that tests/train/schedule_test.cpp checks against.

The lambdas are transformers' optimization.py, copied verbatim in spirit (same operations, same
order); the lr of update s+1 is LambdaLR's lr after s scheduler steps. With torch installed the
values come from torch.optim.lr_scheduler.LambdaLR itself; without it, from LambdaLR's rule
base_lr * lambda(last_epoch) (Python floats), which is what LambdaLR computes.
"""
import math


def linear(w, n):
    def f(s):
        if s < w:
            return float(s) / float(max(1, w))
        return max(0.0, float(n - s) / float(max(1, n - w)))
    return f


def cosine(w, n, num_cycles=0.5):
    def f(s):
        if s < w:
            return float(s) / float(max(1, w))
        progress = float(s - w) / float(max(1, n - w))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))
    return f


def constant(w, n):
    def f(s):
        if s < w:
            return float(s) / float(max(1.0, w))
        return 1.0
    return f


def lrs(kind, base_lr, w, n, steps):
    lam = {"linear": linear, "cosine": cosine, "constant": constant}[kind](w, n)
    try:
        import torch
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=base_lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
        out, s = {}, 0
        for target in sorted(steps):
            while s < target:
                opt.step()
                sched.step()
                s += 1
            out[target] = opt.param_groups[0]["lr"]
        return [out[s] for s in steps]
    except ImportError:
        return [base_lr * lam(s) for s in steps]


cases = []
for kind in ("linear", "cosine", "constant"):
    for base_lr, n, ratio in ((2e-5, 390, 0.03), (1e-4, 10, 0.03), (3e-4, 100, 0.0), (1e-3, 7, 1.0)):
        w = math.ceil(n * ratio)
        steps = sorted({0, 1, max(w - 1, 0), w, w + 1, n // 2, n - 1, n, n + 5})
        for s, v in zip(steps, lrs(kind, base_lr, w, n, steps)):
            cases.append((kind, base_lr, w, n, s, v))
for kind, base_lr, w, n, s, v in cases:
    print(f'    {{ScheduleKind::{kind}, {base_lr!r}, {w}, {n}, {s}, {v!r}}},')
