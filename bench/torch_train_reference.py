#!/usr/bin/python3
"""PyTorch eager reference for bench_train: one full fine-tuning step (forward + backward + AdamW) of
the 155.7M Llama of bench_model (hidden 1024, 8 layers, 16/4 heads of 64, ffn 2816, vocab 32000,
untied head), random weights, one sequence of --seq tokens, written in plain torch:
RMSNorm, rotate_half RoPE, GQA through repeat_interleave with a manual causal softmax (torch 1.13
has no scaled_dot_product_attention), SwiGLU, cross-entropy, torch.optim.AdamW.

Run at its best (docs/ENGINE_NOTES.md): an optimised BLAS behind libblas.so.3 (OpenBLAS pthreads),
torch.set_num_threads, OMP/OPENBLAS/MKL thread counts set explicitly before torch is imported.
--dtype f32 computes in float32; --dtype bf16 under torch.autocast("cpu", bfloat16) (oneDNN bf16
GEMMs; weights, gradients and AdamW stay f32). Prints one JSON line: step times, tokens/s, peak RSS
of this process (the bench runs each configuration in its own process) and the configuration.

  /usr/bin/python3 bench/torch_train_reference.py [--seq 1024] [--steps 3] [--warmup 1]
      [--threads 2] [--dtype f32|bf16] [--foreach 0|1] [--tiny]
"""
import argparse
import json
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--omp-wait-policy", default="passive",
                   help="OMP_WAIT_POLICY for torch's OpenMP pool: passive keeps its idle workers from spinning against "
                        "OpenBLAS's own threads (measured: linear fwd+bwd ~110 GFLOP/s passive, ~90 active); '' = unset")
    p.add_argument("--foreach", type=int, default=1, help="AdamW's multi-tensor path (1) or the per-tensor loop (0)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer toy config, to check the script quickly")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's op table of one more step to stderr")
    return p.parse_args()


args = parse_args()
# Thread counts before torch (and its OpenMP / OpenBLAS) load: one explicit count everywhere.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
if args.omp_wait_policy:
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy

import resource  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)


class Config:
    vocab = 32000
    hidden = 1024
    layers = 8
    heads = 16
    kv_heads = 4
    head_dim = 64
    ffn = 2816
    eps = 1e-5
    theta = 10000.0


if args.tiny:
    Config.layers, Config.vocab = 2, 1000


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(T, D, theta):
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)  # [T, D/2]
    emb = torch.cat([ang, ang], dim=-1)  # [T, D]
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.attn_norm = RMSNorm(c.hidden, c.eps)
        self.q = nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
        self.k = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.v = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.o = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)
        self.ffn_norm = RMSNorm(c.hidden, c.eps)
        self.gate = nn.Linear(c.hidden, c.ffn, bias=False)
        self.up = nn.Linear(c.hidden, c.ffn, bias=False)
        self.down = nn.Linear(c.ffn, c.hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(B, T, c.heads, c.head_dim).transpose(1, 2)  # [B, Hq, T, D]
        k = self.k(h).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v(h).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = c.heads // c.kv_heads
        k = k.repeat_interleave(group, dim=1)  # GQA: kv head h // group serves query head h
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1)) * (c.head_dim ** -0.5)  # [B, Hq, T, T]
        scores = scores.masked_fill(mask, float("-inf"))
        p = torch.softmax(scores.float(), dim=-1).type_as(q)
        a = (p @ v).transpose(1, 2).reshape(B, T, c.heads * c.head_dim)
        x = x + self.o(a)
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c.vocab, c.hidden)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.layers)])
        self.norm = RMSNorm(c.hidden, c.eps)
        self.head = nn.Linear(c.hidden, c.vocab, bias=False)  # untied
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.uniform_(p, -0.01, 0.01)

    def forward(self, ids, targets, cos, sin, mask):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def config_field(key):
    """A field of torch.__config__.show(): "BLAS_INFO=generic", "CPU capability usage: AVX2"."""
    for part in torch.__config__.show().replace(", ", "\n").splitlines():
        if key in part:
            return part[part.index(key):].strip()
    return key + "?"


def blas_library():
    """The BLAS library this process actually mapped (BLAS_INFO=generic means whatever libblas.so.3 is)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return ", ".join(sorted(os.path.realpath(x) for x in libs)) or "none mapped"
    except OSError:
        return "?"


def main():
    torch.manual_seed(0)
    c = Config
    T = args.seq
    rss_runtime = peak_rss_mb()
    model = Llama(c)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0, foreach=bool(args.foreach))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c.vocab, (1, T), generator=g)
    targets = torch.randint(0, c.vocab, (1, T), generator=g)
    cos, sin = rope_tables(T, c.head_dim, c.theta)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)

    def step():
        opt.zero_grad(set_to_none=True)
        if args.dtype == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(ids, targets, cos, sin, mask)
        else:
            loss = model(ids, targets, cos, sin, mask)
        loss.backward()
        opt.step()
        return float(loss)

    times, cpu = [], []
    losses = []
    for i in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpu.append((time.process_time() - c0) / args.threads)
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
    times.sort()
    cpu.sort()
    med, cmed = times[len(times) // 2], cpu[len(cpu) // 2]
    out = {
        "torch": torch.__version__,
        "dtype": args.dtype,
        "seq": T,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "blas_info": config_field("BLAS_INFO"),
        "blas_library": blas_library(),
        "cpu_capability": config_field("CPU capability usage"),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "foreach": bool(args.foreach),
        "params": params,
        "steps": len(times),
        "step_s_median": med,
        "step_s_best": times[0],
        "step_cpu_s_median": cmed,
        "tokens_per_s": T / med,
        "tokens_per_s_cpu": T / cmed,
        "peak_rss_mb": peak_rss_mb(),
        "rss_runtime_mb": rss_runtime,
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
