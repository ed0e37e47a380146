"""The model's shape: plain data, no torch, so that a recipe is validated without importing PyTorch."""

from dataclasses import asdict, dataclass, field


@dataclass
class GPTConfig:
    # pydantic (at the CLI boundary) rejects unknown keys; plain dataclass everywhere else
    __pydantic_config__ = {"extra": "forbid"}

    vocab_size: int = 4096
    seq_len: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    ffn_mult: float = 8 / 3  # SwiGLU hidden = ffn_mult * d_model, the Llama ratio
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    # attend only within a document: a packed block holds several, each closed by EOS (off: as GPT-2, Llama)
    document_mask: bool = False
    eos_id: int | None = None  # set from the tokenizer by the pretrain stage

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ffn_hidden(self) -> int:
        # rounded up to a multiple of 32 for friendlier matmul shapes
        return 32 * -(-int(self.ffn_mult * self.d_model) // 32)

    def validate(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary positions")
        if self.document_mask and self.eos_id is None:
            raise ValueError("model.document_mask needs model.eos_id, the token that ends a document")

    def to_dict(self) -> dict:
        return asdict(self)


# Named sizes: `debug` is what tests start from; the rest follow GPT-2/GPT-3 widths.
MODEL_SIZES: dict[str, dict] = {
    "debug": dict(n_layer=2, n_head=2, d_model=64),
    "tiny": dict(n_layer=4, n_head=4, d_model=128),
    "small": dict(n_layer=6, n_head=6, d_model=384),
    "124M": dict(n_layer=12, n_head=12, d_model=768),
    "350M": dict(n_layer=24, n_head=16, d_model=1024),
    "1.3B": dict(n_layer=24, n_head=32, d_model=2048),
}


ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass
class LoRAConfig:
    __pydantic_config__ = {"extra": "forbid"}

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(ATTENTION))  # projection names, see ATTENTION and MLP

    def validate(self) -> None:
        if self.rank < 1:
            raise ValueError(f"lora.rank must be at least 1, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        unknown = sorted(set(self.targets) - set(ATTENTION + MLP))
        if unknown or not self.targets:
            raise ValueError(f"lora.targets {unknown or '[]'}: choose among {list(ATTENTION + MLP)}")

    def to_dict(self) -> dict:
        return asdict(self)
