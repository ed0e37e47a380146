"""The pipeline, as in the diagram: ingest -> clean -> dedup -> tokenizer -> tokenize+pack -> pretrain -> finetune -> evaluate.

Beside the main line: the Hugging Face export of the pretrained model, and SFT when the recipe names prompt/response data.
"""

from pathlib import Path

from prefect import flow

from flows.config import PipelineConfig
from infra.ray_runtime import ensure_ray
from tasks.clean import clean_task
from tasks.dedup import dedup_task
from tasks.evaluate import evaluate_task
from tasks.export import export_task
from tasks.finetune import finetune_task
from tasks.ingest import ingest_task
from tasks.pack import pack_task
from tasks.sft import sft_task
from tasks.stage import Manifest
from tasks.tokenizer import tokenizer_task
from tasks.train import pretrain_task


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig) -> dict[str, Manifest]:
    workdir = Path(config.workdir).resolve()
    ensure_ray(config.ray.num_cpus, config.ray.address)

    ingested = ingest_task(config.ingest, workdir)
    cleaned = clean_task(ingested, config.clean, workdir)
    deduped = dedup_task(cleaned, config.dedup, workdir)
    tokenizer = tokenizer_task(deduped, config.tokenizer, workdir)
    packed = pack_task(deduped, tokenizer, config.pack, workdir)
    pretrained = pretrain_task(packed, config.pretrain, workdir)
    exported = export_task(pretrained, tokenizer, workdir)
    finetuned = finetune_task(pretrained, tokenizer, config.finetune, workdir)
    instructed = sft_task(pretrained, tokenizer, config.sft, workdir) if config.sft.data else None

    manifests = {"ingest": ingested, "clean": cleaned, "dedup": deduped, "tokenizer": tokenizer, "pack": packed,
                 "pretrain": pretrained, "export": exported, "finetune": finetuned}
    if instructed is not None:
        manifests["sft"] = instructed
    report = evaluate_task(manifests, config.evaluate, config.model_dump(mode="json"), workdir)
    return manifests | {"evaluate": report}
