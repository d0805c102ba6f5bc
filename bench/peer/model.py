#!/usr/bin/python3
"""The PyTorch peer of `frugal bench`: the same DeepSeek-V3-style model as src/model/deepseek.ts,
written from ../shared/reference/SPEC.md (RMSNorm, interleaved RoPE, MLA naive for training and
absorbed with a latent KV cache for decoding, sigmoid + correction-bias group-limited routing,
DeepSeekMoE with a shared expert, dense first layers, MTP), and the dense Llama-style model of
src/model/dense.ts (config.json model_type "llama": MHA with a K/V cache, SwiGLU). It loads a Hugging Face model
directory (config.json + model.safetensors, F32) with a small reader (struct + json, no
safetensors package) and answers benchmark requests as JSON lines on stdin/stdout:

  {"op": "info"}                                     -> torch/BLAS/allocator/kernel description
  {"op": "check", "tokens": f, "logits": f, "B", "T"} -> {"maxAbsDiff"} of its logits vs Frugal's
  {"op": "train", "B", "T", "mtp": lambda}           -> {"s"}: one fwd+bwd+AdamW step, seconds
  {"op": "prefill", "B", "T", "last": bool}          -> {"s"}: one no-grad forward (last: only the
                                                        last position's logits, as generation needs)
  {"op": "decode", "prompt", "steps"}                -> {"s"}: `steps` batch-1 cached decode steps

Tokens come from the same 32-bit LCG as bench/common.ts, so both sides see identical batches.
`model.py memory --dir D --what train|decode ...` runs one job and prints its peak RSS.
Usage: model.py serve --dir D --threads N [--compile 1] | model.py memory ... (see main()).
With --compile 1 the model's forward and loss go through torch.compile (PyTorch 2.x; the bench
runs eager and compiled peers side by side and keeps the faster per row).
"""
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    """name -> float32 tensor, from an F32 safetensors file (each tensor read into its own buffer)."""
    out = {}
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n).decode('utf-8'))
        base = 8 + n
        for name, info in header.items():
            if name == '__metadata__':
                continue
            if info['dtype'] != 'F32':
                raise ValueError(f'{path}: tensor {name} is {info["dtype"]}; the peer reads F32 only')
            s, e = info['data_offsets']
            f.seek(base + s)
            buf = bytearray(e - s)
            f.readinto(buf)
            out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(info['shape']) if e > s else torch.zeros(info['shape'])
    return out


def lcg_tokens(seed, n, vocab):
    """Same sequence as bench/common.ts lcgTokens: s = s*1664525 + 1013904223 mod 2^32; tok = s % vocab."""
    s = seed & 0xFFFFFFFF
    out = []
    for _ in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(s % vocab)
    return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    """Interleaved pairs (official layout, SPEC 5.2). x [B, T, h, dr]; cos/sin [T, dr/2]."""
    xr = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2)


class DeepSeek(nn.Module):
    """Parameters keyed by HF name (dots replaced by '/'), forward by plain functions below."""

    def __init__(self, cfg, weights):
        super().__init__()
        self.c = cfg
        self.L = cfg['num_hidden_layers']
        self.D = cfg.get('num_nextn_predict_layers', 0) or 0
        if cfg.get('rope_scaling'):
            raise ValueError('peer: rope_scaling (YaRN) is not implemented; benchmark a config without it')
        if cfg.get('scoring_func', 'sigmoid') != 'sigmoid':
            raise ValueError('peer: only sigmoid routing (DeepSeek-V3) is implemented')
        self.p = nn.ParameterDict()
        self.buf = {}
        main_embed = weights['model.embed_tokens.weight']
        main_head = weights['lm_head.weight']
        for name, t in weights.items():
            if name.endswith('e_score_correction_bias'):
                self.buf[name] = t.clone()
                continue
            # MTP copies of embed/head that equal the main ones are tied, as Frugal trains them.
            if name.startswith(f'model.layers.{self.L}') or name.startswith(f'model.layers.{self.L + 1}'):
                if name.endswith('.embed_tokens.weight') and torch.equal(t, main_embed):
                    continue
                if name.endswith('.shared_head.head.weight') and torch.equal(t, main_head):
                    continue
            self.p[name.replace('.', '/')] = nn.Parameter(t)
        hd = cfg['qk_rope_head_dim']
        self.inv_freq = 1.0 / (cfg.get('rope_theta', 10000.0) ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        self.scale = (cfg['qk_nope_head_dim'] + hd) ** -0.5
        self.eps = cfg.get('rms_norm_eps', 1e-6)

    def w(self, name):
        key = name.replace('.', '/')
        if key in self.p:
            return self.p[key]
        if name.endswith('.embed_tokens.weight'):
            return self.p['model/embed_tokens/weight']
        if name.endswith('.shared_head.head.weight'):
            return self.p['lm_head/weight']
        raise KeyError(f'peer: the checkpoint lacks {name}')

    def has(self, name):
        return name.replace('.', '/') in self.p

    def tables(self, start, T):
        ang = (torch.arange(start, start + T, dtype=torch.float64)[:, None] * self.inv_freq[None, :]).float().double()
        return torch.cos(ang).float(), torch.sin(ang).float()

    # -- blocks --------------------------------------------------------------------------------
    def mlp(self, pre, x):
        return F.linear(F.silu(F.linear(x, self.w(pre + '.gate_proj.weight'))) * F.linear(x, self.w(pre + '.up_proj.weight')),
                        self.w(pre + '.down_proj.weight'))

    def mla(self, pre, x, cos, sin, cache=None, start=0):
        c = self.c
        B, T, _ = x.shape
        nh, dn, dr, dv, rkv = c['num_attention_heads'], c['qk_nope_head_dim'], c['qk_rope_head_dim'], c['v_head_dim'], c['kv_lora_rank']
        a = pre + '.self_attn'
        if self.has(a + '.q_proj.weight'):
            q = F.linear(x, self.w(a + '.q_proj.weight'))
        else:
            q = F.linear(rms_norm(F.linear(x, self.w(a + '.q_a_proj.weight')), self.w(a + '.q_a_layernorm.weight'), self.eps),
                         self.w(a + '.q_b_proj.weight'))
        q = q.view(B, T, nh, dn + dr)
        q_nope, q_pe = torch.split(q, [dn, dr], -1)
        q_pe = rope(q_pe, cos, sin)
        kva = F.linear(x, self.w(a + '.kv_a_proj_with_mqa.weight'))
        lat, k_pe = torch.split(kva, [rkv, dr], -1)
        lat = rms_norm(lat, self.w(a + '.kv_a_layernorm.weight'), self.eps)
        k_pe = rope(k_pe.unsqueeze(2), cos, sin)
        wkvb = self.w(a + '.kv_b_proj.weight')
        if cache is None:  # naive (training, prefill)
            kv = F.linear(lat, wkvb).view(B, T, nh, dn + dv)
            k_nope, v = torch.split(kv, [dn, dv], -1)
            k = torch.cat([k_nope, k_pe.expand(B, T, nh, dr)], -1).transpose(1, 2)
            qq = torch.cat([q_nope, q_pe], -1).transpose(1, 2)
            s = torch.matmul(qq, k.transpose(-1, -2)) * self.scale
            if T > 1:
                s = s + torch.full((T, T), float('-inf')).triu_(1)
            o = torch.matmul(s.softmax(-1), v.transpose(1, 2)).transpose(1, 2)
        else:  # absorbed, latent cache (decode), SPEC 5.6
            ckv, cpe = cache
            end = start + T
            ckv[:B, start:end] = lat
            cpe[:B, start:end] = k_pe.squeeze(2)
            wkv = wkvb.view(nh, dn + dv, rkv)
            q_abs = torch.einsum('bshd,hdc->bshc', q_nope, wkv[:, :dn])
            s = (torch.einsum('bshc,btc->bsht', q_abs, ckv[:B, :end]) + torch.einsum('bshr,btr->bsht', q_pe, cpe[:B, :end])) * self.scale
            if T > 1:
                s = s + torch.full((T, end), float('-inf')).triu_(start + 1)[:, None, :]
            o = torch.einsum('bsht,btc->bshc', s.softmax(-1), ckv[:B, :end])
            o = torch.einsum('bshc,hdc->bshd', o, wkv[:, -dv:])
        return F.linear(o.reshape(B, T, nh * dv), self.w(a + '.o_proj.weight'))

    def moe(self, pre, x):
        c = self.c
        N = x.shape[0]
        E, k, G, Gk = c['n_routed_experts'], c['num_experts_per_tok'], c.get('n_group', 1), c.get('topk_group', 1)
        s = torch.sigmoid(F.linear(x, self.w(pre + '.mlp.gate.weight')))
        bias = self.buf.get(pre + '.mlp.gate.e_score_correction_bias')
        b = s.detach() + bias if bias is not None else s.detach()
        if G > 1 and Gk < G and c.get('topk_method', 'noaux_tc') != 'greedy':
            bg = b.view(N, G, E // G)
            gs = bg.topk(2, -1).values.sum(-1) if bias is not None else bg.amax(-1)
            drop = torch.ones(N, G, dtype=torch.bool).scatter_(1, gs.topk(Gk, -1).indices, False)
            b = bg.masked_fill(drop.unsqueeze(-1), float('-inf')).flatten(1)
        idx = b.topk(k, -1).indices
        wgt = s.gather(1, idx)
        if k > 1:
            wgt = wgt / wgt.sum(-1, keepdim=True)
        wgt = wgt * c.get('routed_scaling_factor', 1.0)
        y = torch.zeros_like(x)
        counts = torch.bincount(idx.flatten(), minlength=E).tolist()
        for e in range(E):
            if counts[e] == 0:
                continue
            tok, slot = torch.where(idx == e)
            y.index_add_(0, tok, self.mlp(f'{pre}.mlp.experts.{e}', x[tok]) * wgt[tok, slot, None])
        if self.has(pre + '.mlp.shared_experts.gate_proj.weight'):
            y = y + self.mlp(pre + '.mlp.shared_experts', x)
        return y

    def block(self, i, h, cos, sin, cache=None, start=0):
        pre = f'model.layers.{i}'
        h = h + self.mla(pre, rms_norm(h, self.w(pre + '.input_layernorm.weight'), self.eps), cos, sin, cache, start)
        x = rms_norm(h, self.w(pre + '.post_attention_layernorm.weight'), self.eps)
        if self.has(pre + '.mlp.gate.weight'):
            B, T, H = x.shape
            f = self.moe(pre, x.reshape(B * T, H)).view(B, T, H)
        else:
            f = self.mlp(pre + '.mlp', x)
        return h + f

    def forward(self, tokens, caches=None, start=0, last=False):
        """tokens [B, T] -> (logits [B, T, V] ([B, 1, V] with last), hidden after the final norm)."""
        T = tokens.shape[1]
        cos, sin = self.tables(start, T)
        h = F.embedding(tokens, self.w('model.embed_tokens.weight'))
        for i in range(self.L):
            h = self.block(i, h, cos, sin, caches[i] if caches else None, start)
        hid = rms_norm(h, self.w('model.norm.weight'), self.eps)
        return F.linear(hid[:, -1:] if last else hid, self.w('lm_head.weight')), hid

    def loss(self, inputs, targets, mtp_weight=0.0):
        B, T = inputs.shape
        V = self.c['vocab_size']
        logits, h = self.forward(inputs)
        loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))
        if mtp_weight > 0 and self.D > 0:
            total = 0
            for d in range(self.D):
                Tm = T - 1 - d
                if Tm <= 0:
                    break
                pre = f'model.layers.{self.L + d}'
                cos, sin = self.tables(0, Tm)
                e = rms_norm(F.embedding(inputs[:, d + 1:d + 1 + Tm], self.w(pre + '.embed_tokens.weight')), self.w(pre + '.enorm.weight'), self.eps)
                x = F.linear(torch.cat([e, rms_norm(h[:, :Tm], self.w(pre + '.hnorm.weight'), self.eps)], -1), self.w(pre + '.eh_proj.weight'))
                y = self.block(self.L + d, x, cos, sin)
                lg = F.linear(rms_norm(y, self.w(pre + '.shared_head.norm.weight'), self.eps), self.w(pre + '.shared_head.head.weight'))
                total = total + F.cross_entropy(lg.reshape(B * Tm, V), targets[:, d + 1:d + 1 + Tm].reshape(B * Tm))
                h = y
            loss = loss + total * (mtp_weight / self.D)
        return loss

    def new_cache(self, B, cap):
        c = self.c
        return [(torch.zeros(B, cap, c['kv_lora_rank']), torch.zeros(B, cap, c['qk_rope_head_dim'])) for _ in range(self.L)]


class Dense(nn.Module):
    """The dense Llama-style model of src/model/dense.ts: pre-norm blocks of multi-head attention
    (RoPE on interleaved pairs over the whole head, as Frugal and DeepSeek rotate; HF Llama's own
    code rotates halves, so config.json must say rope_interleaved) and a SwiGLU MLP, untied head.
    Attention is matmul + softmax (torch 1.13 here has no fused SDPA); decoding keeps a per-layer K/V cache."""

    def __init__(self, cfg, weights):
        super().__init__()
        self.c = cfg
        self.L = cfg['num_hidden_layers']
        self.nh = cfg['num_attention_heads']
        self.hd = cfg.get('head_dim') or cfg['hidden_size'] // self.nh
        if not cfg.get('rope_interleaved'):
            raise ValueError('peer: the dense model rotates interleaved pairs; config.json must set rope_interleaved: true')
        if cfg.get('num_key_value_heads', self.nh) != self.nh:
            raise ValueError('peer: the dense model is standard multi-head attention (num_key_value_heads = num_attention_heads)')
        if cfg.get('tie_word_embeddings') or 'lm_head.weight' not in weights:
            raise ValueError('peer: the dense model needs an untied lm_head.weight')
        self.p = nn.ParameterDict({name.replace('.', '/'): nn.Parameter(t) for name, t in weights.items()})
        w = lambda name: self.p[name.replace('.', '/')]
        names = ('input_layernorm', 'post_attention_layernorm', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj',
                 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj')
        try:
            # Each layer's weights resolved once: [attn norm, ffn norm, q, k, v, o, gate, up, down].
            self.layers = [[w(f'model.layers.{i}.{n}.weight') for n in names] for i in range(self.L)]
            self.embed, self.norm, self.head = w('model.embed_tokens.weight'), w('model.norm.weight'), w('lm_head.weight')
        except KeyError as e:
            raise KeyError(f'peer: the checkpoint lacks {str(e).strip(chr(39)).replace("/", ".")}') from None
        base = cfg.get('rope_theta', 10000.0)
        # Same tables as denseRopeTables: θ_i rounded to f32, angle p·θ_i rounded to f32.
        self.inv_freq = (1.0 / (base ** (torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd))).float().double()
        self.eps = cfg.get('rms_norm_eps', 1e-6)

    def tables(self, start, T):
        ang = (torch.arange(start, start + T, dtype=torch.float64)[:, None] * self.inv_freq[None, :]).float().double()
        return torch.cos(ang).float(), torch.sin(ang).float()

    def forward(self, tokens, caches=None, start=0, last=False):
        """tokens [B, T] -> (logits [B, T, V] ([B, 1, V] with last), hidden after the final norm)."""
        B, T = tokens.shape
        nh, hd = self.nh, self.hd
        cos, sin = self.tables(start, T)
        end = start + T
        scale = hd ** -0.5
        # Additive causal mask over the keys 0..end-1 (none for a single decode step).
        mask = torch.full((T, end), float('-inf')).triu_(start + 1) if T > 1 else None
        h = F.embedding(tokens, self.embed)
        for i, (an, fn, wq, wk, wv, wo, wg, wu, wd) in enumerate(self.layers):
            x = rms_norm(h, an, self.eps)
            q = rope(F.linear(x, wq).view(B, T, nh, hd), cos, sin).transpose(1, 2)
            k = rope(F.linear(x, wk).view(B, T, nh, hd), cos, sin).transpose(1, 2)
            v = F.linear(x, wv).view(B, T, nh, hd).transpose(1, 2)
            if caches is not None:
                kc, vc = caches[i]
                kc[:B, :, start:end] = k
                vc[:B, :, start:end] = v
                k, v = kc[:B, :, :end], vc[:B, :, :end]
            sc = torch.matmul(q, k.transpose(-1, -2)) * scale
            if mask is not None:
                sc = sc + mask
            o = torch.matmul(sc.softmax(-1), v)
            h = h + F.linear(o.transpose(1, 2).reshape(B, T, nh * hd), wo)
            y = rms_norm(h, fn, self.eps)
            h = h + F.linear(F.silu(F.linear(y, wg)) * F.linear(y, wu), wd)
        hid = rms_norm(h, self.norm, self.eps)
        return F.linear(hid[:, -1:] if last else hid, self.head), hid

    def loss(self, inputs, targets, mtp_weight=0.0):
        if mtp_weight > 0:
            raise ValueError('peer: the dense model has no MTP layers (send mtp 0)')
        B, T = inputs.shape
        logits, _ = self.forward(inputs)
        return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))

    def new_cache(self, B, cap):
        return [(torch.zeros(B, self.nh, cap, self.hd), torch.zeros(B, self.nh, cap, self.hd)) for _ in range(self.L)]


def load(dir_):
    """The model of a directory: model_type 'llama' -> Dense, anything else -> DeepSeek."""
    with open(os.path.join(dir_, 'config.json')) as f:
        cfg = json.load(f)
    weights = read_safetensors(os.path.join(dir_, 'model.safetensors'))
    return Dense(cfg, weights) if cfg.get('model_type') == 'llama' else DeepSeek(cfg, weights)


def batch(model, B, T, seed=1):
    V = model.c['vocab_size']
    toks = torch.tensor(lcg_tokens(seed, B * (T + 1), V), dtype=torch.long).view(B, T + 1)
    return toks[:, :T].contiguous(), toks[:, 1:].contiguous()


class Bench:
    """One model + optimizer; each method times one repetition (the caller discards warm-ups)."""

    def __init__(self, model):
        self.m = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def train(self, B, T, mtp):
        x, y = batch(self.m, B, T)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        self.m.loss(x, y, mtp).backward()
        self.opt.step()
        return time.perf_counter() - t0

    def prefill(self, B, T, last=False):
        x, _ = batch(self.m, B, T, seed=2)
        with torch.inference_mode():
            t0 = time.perf_counter()
            self.m.forward(x, last=last)
            return time.perf_counter() - t0

    def decode(self, prompt, steps):
        V = self.m.c['vocab_size']
        toks = lcg_tokens(3, prompt + steps, V)
        with torch.inference_mode():
            caches = self.m.new_cache(1, prompt + steps)
            # The prompt in chunks of 512 (the score blocks of a 4K prompt at once take gigabytes).
            for c0 in range(0, prompt, 512):
                c1 = min(prompt, c0 + 512)
                self.m.forward(torch.tensor([toks[c0:c1]]), caches, c0, last=True)
            t0 = time.perf_counter()
            for i in range(prompt, prompt + steps):
                self.m.forward(torch.tensor([[toks[i]]]), caches, i)
            return time.perf_counter() - t0


def mapped_libs():
    libs = set()
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                p = line.split()[-1]
                if '.so' in p and any(k in p for k in ('blas', 'lapack', 'malloc', 'gomp', 'mkl')):
                    libs.add(p)
    except OSError:
        pass
    return sorted(libs)


def info():
    import ctypes
    libs = mapped_libs()
    core = ''
    for p in libs:
        if 'openblas' in p:
            try:
                lib = ctypes.CDLL(p)
                lib.openblas_get_corename.restype = ctypes.c_char_p
                lib.openblas_get_config.restype = ctypes.c_char_p
                core = f'{lib.openblas_get_config().decode()} core={lib.openblas_get_corename().decode()}'
            except (OSError, AttributeError):
                pass
    blas = 'OpenBLAS' if any('openblas' in p for p in libs) else ('MKL' if any('mkl' in p for p in libs) else 'reference/other BLAS')
    alloc = 'tcmalloc' if any('tcmalloc' in p for p in libs) else 'glibc malloc'
    cfg_show = torch.__config__.show()
    blas_line = next((l.strip() for l in cfg_show.splitlines() if 'BLAS_INFO' in l), '')
    blas_line = next((p.strip() for p in blas_line.split(',') if 'BLAS_INFO' in p), blas_line)
    cap = next((l.split(':', 1)[1].strip() for l in cfg_show.splitlines() if 'CPU capability usage' in l), '?')
    return {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'blas': blas, 'openblas': core, 'allocator': alloc,
            'libs': libs, 'build_blas': blas_line, 'cpu_capability': cap,
            'env': {k: os.environ.get(k, '') for k in ('OPENBLAS_NUM_THREADS', 'OMP_WAIT_POLICY', 'OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE', 'LD_PRELOAD')}}


def check(model, req):
    B, T = req['B'], req['T']
    with open(req['tokens'], 'rb') as f:
        toks = torch.frombuffer(bytearray(f.read()), dtype=torch.int32).long().view(B, T)
    with open(req['logits'], 'rb') as f:
        ref = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).view(B, T, -1)
    with torch.inference_mode():
        logits, _ = model.forward(toks)
        out = {'maxAbsDiff': (logits - ref).abs().max().item(), 'maxAbsLogit': ref.abs().max().item()}
        if req.get('decode'):
            # The same tokens through the absorbed latent cache, one at a time (decode path).
            caches = model.new_cache(B, T)
            rows = [model.forward(toks[:, i:i + 1], caches, i)[0] for i in range(T)]
            out['maxAbsDiffDecode'] = (torch.cat(rows, 1) - ref).abs().max().item()
    return out


def maybe_compile(model, args):
    """--compile 1: forward and loss through torch.compile (default inductor backend)."""
    if args.get('compile', '0') != '1':
        return
    if not hasattr(torch, 'compile'):
        raise RuntimeError(f'peer: torch {torch.__version__} has no torch.compile')
    model.forward = torch.compile(model.forward)
    model.loss = torch.compile(model.loss)


def serve(args):
    model = load(args['dir'])
    maybe_compile(model, args)
    bench = Bench(model)
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get('op')
        try:
            if op == 'info':
                res = info()
                res['compile'] = args.get('compile', '0') == '1'
            elif op == 'check':
                res = check(model, req)
            elif op == 'train':
                res = {'s': bench.train(req['B'], req['T'], req.get('mtp', 0.0))}
            elif op == 'prefill':
                res = {'s': bench.prefill(req['B'], req['T'], bool(req.get('last', False)))}
            elif op == 'decode':
                res = {'s': bench.decode(req['prompt'], req['steps'])}
            elif op == 'quit':
                break
            else:
                res = {'error': f'unknown op {op!r}'}
        except Exception as e:  # report, keep serving
            res = {'error': f'{type(e).__name__}: {e}'}
        res['maxRssKB'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sys.stdout.write(json.dumps(res) + '\n')
        sys.stdout.flush()


def peak_rss_kb():
    # VmHWM is this process's own peak; ru_maxrss on Linux keeps the parent's high-water mark
    # across fork+exec, so a child started by a large Node process would report the parent's.
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory(args):
    model = load(args['dir'])
    maybe_compile(model, args)
    bench = Bench(model)
    if args['what'] == 'train':
        for _ in range(2):
            bench.train(int(args['B']), int(args['T']), float(args.get('mtp', 0)))
    else:
        bench.decode(int(args['prompt']), int(args['steps']))
    print(json.dumps({'maxRssKB': peak_rss_kb()}))


def main(argv):
    if len(argv) < 1 or argv[0] not in ('serve', 'memory'):
        print('usage: model.py serve --dir D --threads N | model.py memory --dir D --threads N --what train|decode [--B --T --mtp | --prompt --steps]', file=sys.stderr)
        return 2
    args = {}
    rest = argv[1:]
    for i in range(0, len(rest) - 1, 2):
        args[rest[i].lstrip('-')] = rest[i + 1]
    torch.set_num_threads(int(args.get('threads', 1)))
    torch.manual_seed(0)
    (serve if argv[0] == 'serve' else memory)(args)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
