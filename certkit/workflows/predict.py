"""``certkit predict``: the smoothed classifier's prediction (Cohen's PREDICT) per image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from certkit.certifiers.cohen import check_predict, predict_process
from certkit.engines import resolve_device
from certkit.results.store import ResultsStore
from certkit.results.writer import PREDICT_COLUMNS
from certkit.sampling import MonteCarloSampler
from certkit.smoothers import build_smoother, describe_smoother
from certkit.training.distributed import barrier, init_from_env, local_device
from certkit.workflows.certify import RANK_WAIT, CertifyJob, CertifyOutcome, Progress, _Silent, bar_before_model, certify_packed, default_output, metadata, now, prepare, resolve_onnx

PREDICT_METHOD = "cohen-predict"


def run_predict(job: CertifyJob, configured_datasets: Mapping[str, Any], configured_checkpoints: Mapping[float, Path] | None = None, progress: Progress | None = None) -> CertifyOutcome:
    """Predict every selected image; abstains where the top two classes are not separated at alpha.
    ``job.n0`` and ``job.certifier`` are not used. Under torchrun the ranks share the images as
    certify's do (part files, merged by rank 0)."""
    progress = progress or _Silent()
    check_predict(job.n, job.alpha)
    job = resolve_onnx(job)
    smoother = build_smoother(job.smoother, job.sigma, job.smoother_options)
    context = init_from_env(resolve_device(job.device), timeout=RANK_WAIT)
    if context.enabled:
        job = replace(job, device=str(local_device(resolve_device(job.device), context)))
        progress = progress if context.is_main else _Silent()
    early = None if context.enabled else bar_before_model(job, smoother, PREDICT_METHOD, progress, prefix="predict ")
    run = prepare(job, configured_datasets, configured_checkpoints, progress, smoother, on_selected=early)
    job = run.job
    out = job.out or default_output(job, run.source.name, run.choice, PREDICT_METHOD)
    info = metadata(replace(job, certifier=PREDICT_METHOD, n0=0), run, smoother, kind="predict")
    results = ResultsStore.open(out, info, columns=PREDICT_COLUMNS, overwrite=job.overwrite, note=progress.note) if context.is_main else None
    writer = results
    progress.results_file(out)
    if context.enabled:  # as in run_certify: every rank reads the merged file, then writes its own part
        barrier(context)
        writer = ResultsStore.open_part(out, info, context.rank, context.world_size, columns=PREDICT_COLUMNS)
    todo = [i for i in run.indices if i not in writer.done]
    mine = todo[context.rank :: context.world_size]
    sampler = MonteCarloSampler(run.engine, smoother, job.batch, job.seed, on_samples=progress.samples)
    progress.start(len(run.indices) - len(todo) + len(mine), len(run.indices) - len(todo), f"predict {run.source.name} {describe_smoother(smoother)} on {run.choice.name}")
    finished = None
    try:
        for idx, label, result, seconds in certify_packed(sampler, run.dataset, mine, lambda: predict_process(job.n, job.alpha)):
            fields = (idx, label, result.prediction, int(result.prediction == label), f"{seconds:.4f}", result.samples, result.count_top, result.count_second, f"{result.p_value:.6g}")
            writer.write("\t".join(str(f) for f in fields) + "\n")
            progress.image_done()
        writer.sort_rows()
        finished = now()
    finally:
        writer.close(finished=finished)
    if context.enabled:
        barrier(context)
        if context.is_main:
            results.merge_parts()
            results.close(finished=now(), world_size=context.world_size)
    return CertifyOutcome(out, len(todo), len(run.indices) - len(todo), len(run.indices), context.rank)
