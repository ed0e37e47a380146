"""A decoder-only transformer in one file: RMSNorm, rotary positions, SwiGLU, causal SDPA.

The parameter layout follows Llama (q/k/v/o projections, gate/up/down MLP, no biases)
so that a Hugging Face `LlamaForCausalLM` export is a renaming of keys.

Weights are initialised N(0, 0.02), and the two projections that write into the residual stream (attention's
o_proj, the MLP's down_proj) N(0, 0.02 / sqrt(2 * n_layer)) as in GPT-2, so that the residual's variance does
not grow with depth. The init is one `Module.apply` pass at the end of the constructor: under ZeRO-3's
partitioned construction (`deepspeed.zero.Init`) each parameter is already split across ranks by then, and
zero.Init gathers each module's parameters around an `apply` function, so every rank draws the same weights.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from model.config import MODEL_SIZES, GPTConfig  # noqa: F401 - re-exported: the model and its shape together


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32 for stability under bf16, as Llama does
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rotary_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hd): HF's "rotate_half" layout
    return angles.cos(), angles.sin()


INIT_STD = 0.02


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.o_proj.writes_residual = True  # scaled at init (GPT._init_weights)

    def forward(self, x, cos, sin, mask=None, kv=None):
        """mask: (B or 1, 1, T, S) bool, True where a query may attend a key, or None for plain causal attention
        over x's own T positions; kv: this layer's cache, extended with x's keys and values (S = cached + T)."""
        B, T, C = x.shape
        q, k, v = (p(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, nh, T, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv is not None:
            k, v = kv.extend(k, v)  # (B, nh, S, hd)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)
        self.down_proj.writes_residual = True

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, mask=None, kv=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class LayerCache:
    """One layer's keys and values of the positions computed so far, in buffers sized for the whole context."""

    def __init__(self, max_len: int):
        self.max_len, self.length = max_len, 0
        self.keys = self.values = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None:  # (B, nh, max_len, hd), allocated at the first call
            self.keys = k.new_empty(*k.shape[:2], self.max_len, k.shape[-1])
            self.values = torch.empty_like(self.keys)
        end = self.length + k.shape[2]
        self.keys[:, :, self.length : end], self.values[:, :, self.length : end] = k, v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class KVCache:
    """What incremental decoding keeps between calls: each layer's keys and values, and the token ids they came
    from (a document mask needs to know where the earlier documents ended)."""

    def __init__(self, cfg: GPTConfig):
        self.layers = [LayerCache(cfg.seq_len) for _ in range(cfg.n_layer)]
        self.tokens: torch.Tensor | None = None  # (B, cached)

    @property
    def length(self) -> int:
        return 0 if self.tokens is None else self.tokens.shape[1]


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rotary_tables(cfg.seq_len, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.residual_std = INIT_STD / math.sqrt(2 * cfg.n_layer)  # 2 * n_layer projections add into the residual
        self.apply(self._init_weights)
        self.activation_checkpointing = False  # recompute each block's activations in backward: memory for time

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = self.residual_std if getattr(module, "writes_residual", False) else INIT_STD
            nn.init.normal_(module.weight, mean=0.0, std=std)

    def attention_mask(self, tokens: torch.Tensor, T: int, key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(B or 1, 1, T, S) for the last T of `tokens` (B, S) attending all S, or None when plain causal attention
        over T = S positions is the answer (SDPA's fast path)."""
        S = tokens.shape[1]
        if not self.cfg.document_mask and key_padding_mask is None and S == T:
            return None
        allowed = torch.ones(T, S, dtype=torch.bool, device=tokens.device).tril(diagonal=S - T)[None]  # (1, T, S)
        if self.cfg.document_mask:
            is_eos = tokens == self.cfg.eos_id
            doc = is_eos.cumsum(1) - is_eos.long()  # (B, S) document index; an EOS belongs to the document it ends
            allowed = allowed & (doc[:, S - T :, None] == doc[:, None, :])
        if key_padding_mask is not None:
            allowed = allowed & key_padding_mask[:, None, :]
        return allowed[:, None]

    def hidden_states(self, idx: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                      cache: KVCache | None = None) -> torch.Tensor:
        past, T = (cache.length if cache else 0), idx.shape[1]
        if past + T > self.cfg.seq_len:
            raise ValueError(f"sequence length {past + T} exceeds the model's seq_len {self.cfg.seq_len}")
        tokens = idx
        if cache is not None:
            tokens = cache.tokens = idx if cache.tokens is None else torch.cat([cache.tokens, idx], dim=1)
        mask = self.attention_mask(tokens, T, key_padding_mask)
        x = self.embed_tokens(idx)  # (B, T, C)
        cos, sin = self.rope_cos[past : past + T], self.rope_sin[past : past + T]
        for i, block in enumerate(self.layers):
            kv = cache.layers[i] if cache else None
            if self.activation_checkpointing and self.training:
                x = checkpoint(block, x, cos, sin, mask, kv, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, kv)
        return self.norm(x)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, vocab); with a cache, idx holds only the positions after the cached ones."""
        return self.lm_head(self.hidden_states(idx, cache=cache))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), the PaLM appendix B count used for MFU."""
        cfg = self.cfg
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.d_model * cfg.seq_len


class GPTClassifier(nn.Module):
    """The pretrained backbone with a linear head on the mean of the non-padding positions."""

    def __init__(self, backbone: GPT, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.score = nn.Linear(backbone.cfg.d_model, num_classes)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        mask = positions[None, :] < lengths[:, None]  # (B, T) True on real tokens
        h = self.backbone.hidden_states(idx, key_padding_mask=mask)
        pooled = (h * mask[..., None]).sum(1) / lengths[:, None].clamp(min=1)
        return self.score(pooled)  # (B, num_classes)
