"""Export the pretrained model in Hugging Face format (LlamaForCausalLM + tokenizer)."""

from pathlib import Path

from prefect import task
from tokenizers import Tokenizer

from model.export import export_hf
from model.weights import load_gpt
from tasks.stage import Manifest, fingerprint, run_stage
from tasks.tokenizer import EOS, PAD

VERSION = "1"


def export(pretrained: Manifest, tokenizer: Manifest, workdir: Path) -> Manifest:
    fp = fingerprint("export", VERSION, {}, [pretrained.fingerprint, tokenizer.fingerprint])

    def build(folder: Path) -> dict:
        tok = Tokenizer.from_file(str(tokenizer.file("tokenizer")))
        export_hf(load_gpt(pretrained.path), tokenizer.path, folder, tok.token_to_id(EOS), tok.token_to_id(PAD))
        return {"files": {"config": "config.json", "weights": "model.safetensors"}}

    return run_stage(workdir, "export", fp, build)


@task(name="export-hf", retries=1)
def export_task(pretrained: Manifest, tokenizer: Manifest, workdir: Path) -> Manifest:
    return export(pretrained, tokenizer, workdir)
