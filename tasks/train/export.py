"""Export the pretrained model in Hugging Face format (LlamaForCausalLM + tokenizer)."""

from pathlib import Path

from tokenizers import Tokenizer

from infra.code_hash import stage_code
from infra.stage import Manifest, fingerprint, run_stage
from tasks.data.tokenizer import EOS, PAD

CODE = stage_code(__name__, libraries=("torch", "safetensors", "tokenizers"))


def export(pretrained: Manifest, tokenizer: Manifest, workdir: str) -> Manifest:
    fp = fingerprint("export", CODE, {}, [pretrained.fingerprint, tokenizer.fingerprint])

    def build(folder: Path) -> dict:
        from model.hf import (
            export_hf,  # torch: only when the export is built, not when it is found cached
        )
        from model.weights import load_gpt

        tok = Tokenizer.from_file(str(tokenizer.local_file("tokenizer")))
        export_hf(load_gpt(pretrained.local_root()), tokenizer.local_root(), folder, tok.token_to_id(EOS), tok.token_to_id(PAD))
        return {"files": {"config": "config.json", "weights": "model.safetensors"}}

    return run_stage(workdir, "export", fp, build)
