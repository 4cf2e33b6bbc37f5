#!/usr/bin/python3
"""PyTorch CPU baseline for `layerswarm bench kernels`: the same shapes and work, float32.

Reads one JSON spec argument, prints one JSON object on stdout:
  spec:   {"threads": n, "warmup": w, "reps": r, "matmul": [[N, C, OC], ...],
           "attention": [B, T, C, NH] | null, "llama": [B, T, C, NH, H] | null,
           "flash": [[B, T, C, NH], ...] | null,
           "step": {"vocab", "block", "layers", "heads", "d", "B", "T"} | null}
  output: {"torch": version, "blas": library path, "threads": n, "flash": how, "results": {name: value}}
Result names and units match bench/kernels.ts: matmul GFLOP/s (forward 2*N*C*OC flops; backward
4*N*C*OC: dinp and dweight, plus dbias), attention and the Llama kernels (rmsnorm, rope, swiglu,
forward + backward) milliseconds, flash attention (flash.fwd.BbxTt, flash.fwd+bwd.BbxTt: causal
F.scaled_dot_product_attention where torch has it (>= 2.0), else the explicit T x T attention, named
in "flash") milliseconds, training step tokens/s.
Timings are medians of `reps` runs after `warmup` runs.
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def median_seconds(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def blas_library():
    try:
        with open('/proc/self/maps') as f:
            libs = sorted({line.split()[-1] for line in f if 'blas' in line.lower() and line.split()[-1].startswith('/')})
        return os.path.realpath(libs[0]) if libs else None
    except OSError:
        return None


class Block(nn.Module):
    """GPT-2 block as in core/model: pre-LayerNorm, causal self-attention, 4x MLP with tanh GELU."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.fcproj = nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.proj(attention(self.qkv(self.ln1(x)), self.heads))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate='tanh'))


def attention(qkv, heads):
    """llm.c-style attention: explicit scores, causal mask, softmax, weighted values."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B, T, heads, C // heads).transpose(1, 2)
    k = k.view(B, T, heads, C // heads).transpose(1, 2)
    v = v.view(B, T, heads, C // heads).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // heads))
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    att = att.masked_fill(~mask, float('-inf')).softmax(dim=-1)
    return (att @ v).transpose(1, 2).reshape(B, T, C)


class GPT(nn.Module):
    def __init__(self, vocab, block, layers, heads, d):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block, d)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.lnf = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)  # untied, as in core/model

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.lnf(x))
        return F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


def llama_kernels(results, B, T, C, NH, H, warmup, reps):
    """RMSNorm, rotary embeddings (transformers' rotate_half on q and k of qkv) and SwiGLU, forward + backward, ms."""
    N, hs = B * T, C // NH
    x = torch.randn(N, C, requires_grad=True)
    w = torch.ones(C, requires_grad=True)
    dy = torch.randn(N, C)

    def rms():
        x.grad = None
        w.grad = None
        (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w).backward(dy)
    results['rmsnorm.fwd+bwd'] = median_seconds(rms, warmup, reps) * 1e3

    ang = torch.outer(torch.arange(T).float(), 1.0 / (10000 ** (torch.arange(0, hs, 2).float() / hs)))
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]
    qkv = torch.randn(B, T, 3 * C, requires_grad=True)
    dq = torch.randn(B, T, 3 * C)

    def rot(t):
        t = t.reshape(B, T, NH, hs)
        t1, t2 = t.chunk(2, -1)
        return (t * cos + torch.cat([-t2, t1], -1) * sin).reshape(B, T, C)

    def rope():
        qkv.grad = None
        q, k, v = qkv.split(C, -1)
        torch.cat([rot(q), rot(k), v], -1).backward(dq)
    results['rope.fwd+bwd'] = median_seconds(rope, warmup, reps) * 1e3

    gu = torch.randn(N, 2 * H, requires_grad=True)
    dh = torch.randn(N, H)

    def swiglu():
        gu.grad = None
        g, u = gu.chunk(2, -1)
        (F.silu(g) * u).backward(dh)
    results['swiglu.fwd+bwd'] = median_seconds(swiglu, warmup, reps) * 1e3


def causal_sdpa(qkv, heads):
    """F.scaled_dot_product_attention(is_causal=True) on q, k, v of qkv [B, T, 3C]."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (t.view(B, T, heads, C // heads).transpose(1, 2) for t in qkv.split(C, dim=2))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)


def flash_kernels(results, shapes, warmup, reps):
    """Causal attention at each [B, T, C, NH], forward and forward + backward, ms; returns how it ran."""
    has_sdpa = hasattr(F, 'scaled_dot_product_attention')
    fn = causal_sdpa if has_sdpa else attention
    for B, T, C, NH in shapes:
        qkv = torch.randn(B, T, 3 * C, requires_grad=True)
        dout = torch.randn(B, T, C)
        with torch.no_grad():
            results[f'flash.fwd.B{B}xT{T}'] = median_seconds(lambda: fn(qkv, NH), warmup, reps) * 1e3

        def fwd_bwd():
            qkv.grad = None
            fn(qkv, NH).backward(dout)
        results[f'flash.fwd+bwd.B{B}xT{T}'] = median_seconds(fwd_bwd, warmup, reps) * 1e3
    return 'F.scaled_dot_product_attention(is_causal=True)' if has_sdpa else \
        f'explicit T x T attention (torch {torch.__version__} has no F.scaled_dot_product_attention)'


def main():
    spec = json.loads(sys.argv[1])
    threads = int(spec.get('threads', 1))
    warmup = int(spec.get('warmup', 2))
    reps = int(spec.get('reps', 7))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    results = {}

    for N, C, OC in spec.get('matmul', []):
        x = torch.randn(N, C)
        w = torch.randn(OC, C)
        b = torch.randn(OC)
        dout = torch.randn(N, OC)
        t = median_seconds(lambda: F.linear(x, w, b), warmup, reps)
        results[f'matmul.fwd.{N}x{C}x{OC}'] = 2 * N * C * OC / t / 1e9

        def backward():
            dout @ w            # dinp
            dout.t() @ x        # dweight
            dout.sum(0)         # dbias
        t = median_seconds(backward, warmup, reps)
        results[f'matmul.bwd.{N}x{C}x{OC}'] = 4 * N * C * OC / t / 1e9

    att = spec.get('attention')
    if att:
        B, T, C, NH = att
        qkv = torch.randn(B, T, 3 * C, requires_grad=True)
        dout = torch.randn(B, T, C)
        with torch.no_grad():
            t = median_seconds(lambda: attention(qkv, NH), warmup, reps)
        results['attention.fwd'] = t * 1e3

        def fwd_bwd():
            qkv.grad = None
            attention(qkv, NH).backward(dout)
        t = median_seconds(fwd_bwd, warmup, reps)
        results['attention.fwd+bwd'] = t * 1e3

    ll = spec.get('llama')
    if ll:
        llama_kernels(results, *ll, warmup=warmup, reps=reps)

    flash = None
    if spec.get('flash'):
        flash = flash_kernels(results, spec['flash'], warmup, reps)

    step = spec.get('step')
    if step:
        model = GPT(step['vocab'], step['block'], step['layers'], step['heads'], step['d'])
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                                lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
        B, T = step['B'], step['T']
        idx = torch.randint(0, step['vocab'], (B, T))
        tgt = torch.randint(0, step['vocab'], (B, T))

        def train_step():
            opt.zero_grad(set_to_none=False)
            loss = model(idx, tgt)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        t = median_seconds(train_step, warmup, reps)
        results['train.step.tiny'] = B * T / t

    out = {'torch': torch.__version__, 'blas': blas_library(), 'threads': threads, 'results': results}
    if flash is not None:
        out['flash'] = flash
    print(json.dumps(out))


if __name__ == '__main__':
    main()
