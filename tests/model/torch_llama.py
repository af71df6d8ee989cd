#!/usr/bin/python3
"""An independent small Llama in PyTorch: the reference for seqit's training backward.

Reads <dir>/manifest.json (written by tests/model/train_network_test.cpp): for each case a config,
a batch (B rows of T tokens, shifted targets with -100 = ignored, RoPE positions, packed segment
ids), the weights under their HF names and LoRA adapters (PEFT layout A [r, in], B [out, r]) as raw
little-endian f32 files. Computes in float64 the token-sum cross-entropy of the trained tokens
(segment-blocked causal attention, GQA, RoPE half layout, SwiGLU, RMSNorm, tied or untied head,
q/k/v/o biases, LoRA without dropout), backpropagates grad_scale * loss, and writes <case>.out.json
with the loss, the token count and the gradient files of the trainable tensors. When a case asks
for it, also runs torch.optim.AdamW (float32, two param groups: decay / no decay) for the given
steps from seqit's own gradients, and writes the updated tensors.

Only `import torch`: no transformers, no peft.
"""
import json
import math
import os
import struct
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(77)  # the C++ test skips, saying why


def read_f32(path, shape):
    t = torch.from_file(path, shared=False, size=math.prod(shape), dtype=torch.float32)
    return t.reshape(shape).clone()


def write_tensor(path, t):
    data = t.detach().to(torch.float32).contiguous().view(-1).tolist()
    with open(path, "wb") as f:
        f.write(struct.pack("<%df" % len(data), *data))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def loss_of(case, W, lora):
    cfg, batch = case["config"], case["batch"]
    B, T = batch["B"], batch["T"]
    C, Fd, L = cfg["hidden"], cfg["intermediate"], cfg["layers"]
    Hq, Hkv, D, V = cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["vocab"]
    eps, theta = cfg["eps"], cfg["theta"]
    tokens = torch.tensor(batch["tokens"], dtype=torch.long).view(B, T)
    targets = torch.tensor(batch["targets"], dtype=torch.long).view(B * T)
    pos = torch.tensor(batch["positions"], dtype=torch.float64).view(B, T)
    seg = torch.tensor(batch["segment_ids"], dtype=torch.long).view(B, T)

    def rmsnorm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def proj(x, module):
        y = F.linear(x, W[module + ".weight"], W.get(module + ".bias"))
        if lora is not None and module in lora["adapters"]:
            A, Bm = lora["adapters"][module]
            y = y + lora["scale"] * F.linear(F.linear(x, A), Bm)
        return y

    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    mask = causal[None] & (seg[:, :, None] == seg[:, None, :])  # [B, Tq, Tk]
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    angles = pos[..., None] * inv_freq  # [B, T, D/2]
    cos = torch.cat((angles.cos(), angles.cos()), -1)[:, None]  # [B, 1, T, D]
    sin = torch.cat((angles.sin(), angles.sin()), -1)[:, None]

    x = W["model.embed_tokens.weight"][tokens]  # [B, T, C]
    for l in range(L):
        p = "model.layers.%d." % l
        h = rmsnorm(x, W[p + "input_layernorm.weight"])
        q = proj(h, p + "self_attn.q_proj").view(B, T, Hq, D).transpose(1, 2)
        k = proj(h, p + "self_attn.k_proj").view(B, T, Hkv, D).transpose(1, 2)
        v = proj(h, p + "self_attn.v_proj").view(B, T, Hkv, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(Hq // Hkv, dim=1)  # query head h uses kv head h // (Hq / Hkv)
        v = v.repeat_interleave(Hq // Hkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        scores = scores.masked_fill(~mask[:, None], float("-inf"))
        attn = torch.softmax(scores, dim=-1) @ v  # [B, Hq, T, D]
        x = x + proj(attn.transpose(1, 2).reshape(B, T, Hq * D), p + "self_attn.o_proj")
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"])
        g = proj(h, p + "mlp.gate_proj")
        u = proj(h, p + "mlp.up_proj")
        x = x + proj(F.silu(g) * u, p + "mlp.down_proj")
    h = rmsnorm(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if cfg["tied"] else W["lm_head.weight"]
    logits = (h @ head.T).view(B * T, V)
    loss = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


def run_case(d, case):
    W = {}
    for w in case["weights"]:
        W[w["name"]] = read_f32(os.path.join(d, w["file"]), w["shape"]).to(torch.float64)
    lora = None
    if case.get("lora"):
        lora = {"scale": case["lora"]["scale"], "adapters": {}}
        for a in case["lora"]["adapters"]:
            A = read_f32(os.path.join(d, a["a_file"]), a["a_shape"]).to(torch.float64)
            Bm = read_f32(os.path.join(d, a["b_file"]), a["b_shape"]).to(torch.float64)
            lora["adapters"][a["module"]] = (A, Bm)
    trainable = {}
    for name in case["trainable"]:
        if lora is not None:
            module, which = name.rsplit(".lora_", 1)
            t = lora["adapters"][module][0 if which.startswith("A") else 1]
        else:
            t = W[name]
        t.requires_grad_(True)
        trainable[name] = t
    loss, tokens = loss_of(case, W, lora)
    (loss * case["grad_scale"]).backward()
    out = {"loss": loss.item(), "tokens": tokens, "grads": {}, "adamw": {}}
    for i, (name, t) in enumerate(trainable.items()):
        f = "%s.grad.%d.f32" % (case["name"], i)
        write_tensor(os.path.join(d, f), t.grad)
        out["grads"][name] = f

    opt = case.get("adamw")
    if opt:
        # From seqit's own f32 gradients (given per trainable tensor): this checks the optimizer step,
        # not the gradients again.
        decay, no_decay, params = [], [], {}
        for name, g in opt["grads"].items():
            t = trainable[name].detach().to(torch.float32).clone().requires_grad_(True)
            params[name] = (t, read_f32(os.path.join(d, g["file"]), g["shape"]))
            (decay if g["decay"] else no_decay).append(t)
        optim = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opt["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"])
        for _ in range(opt["steps"]):
            for t, g in params.values():
                t.grad = g.clone()
            optim.step()
        for i, (name, (t, _)) in enumerate(params.items()):
            f = "%s.adamw.%d.f32" % (case["name"], i)
            write_tensor(os.path.join(d, f), t)
            out["adamw"][name] = f
    with open(os.path.join(d, case["name"] + ".out.json"), "w") as f:
        json.dump(out, f)


def main():
    d = sys.argv[1]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    for case in manifest["cases"]:
        run_case(d, case)


if __name__ == "__main__":
    main()
