"""``recal fit``, ``recal export``, ``recal apply`` and ``recal tune``: repairs of a stored run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recal.calibrators import RECALIBRATORS
from recal.cli.common import (
    DEFAULT_CONFIDENCE,
    CollapseOpt,
    ConfidenceOpt,
    FractionOpt,
    ProgressOpt,
    ResamplesOpt,
    RunArg,
    SignKeyEnvOpt,
    names,
    reported,
)
from recal.lines import dumps_line
from recal.repair import DEFAULT_METHODS

__all__ = ["fit", "export", "apply", "tune"]


def fit(
    run: RunArg,
    methods: Annotated[str, typer.Option(
        help="Comma-separated repair methods: recal's recalibrators and the peer libraries' "
             "(see `recal.repairs`).")] = ",".join(DEFAULT_METHODS),
    collapse: CollapseOpt = "normalized", confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    calibration_fraction: FractionOpt = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split and the bootstrap.")] = 0,
    resamples: ResamplesOpt = 1000,
    confirm: Annotated[bool, typer.Option(
        help="Resample the held-out questions at the refitted sampling temperature.")] = False,
    cv: Annotated[int | None, typer.Option(
        min=2, help="Judge out of fold with K folds instead of one held-out split.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder (default: RUN/fit-B-NAME, NAME the --confidence).")] = None,
) -> None:
    """Fit repairs on a calibration split and judge them on the held-out split."""
    from recal.flows import write_fit
    from recal.repair import FitConfig, confirm_temperature, fit_methods
    from recal.runstore import RunStore

    with reported():
        config = FitConfig(methods=names(methods), scorer=confidence, collapse=collapse,
                           calibration_fraction=calibration_fraction, seed=seed,
                           n_resamples=resamples, cv_folds=cv)
        store = RunStore.open(run)
        report = fit_methods(store, config)
        doc = report.to_dict()
        if confirm and report.temperature is not None:
            if report.temperature.tau_ == report.temperature.tau0:
                typer.echo("the refitted sampling temperature is the one sampled at: nothing "
                           "to confirm by resampling", err=True)
            else:
                doc["sampling_temperature_confirmed"] = confirm_temperature(store, report)
    folder = out or run / f"fit-{collapse}-{confidence}"
    with reported():
        table = write_fit(doc, folder)
    typer.echo(table)
    typer.echo(f"\n{folder / 'fit.json'}")


def export(
    run: RunArg,
    method: Annotated[str, typer.Option(
        help=f"The recalibrator to export: {', '.join(RECALIBRATORS)}.")] = "isotonic",
    collapse: CollapseOpt = "normalized", confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    calibration_fraction: FractionOpt = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    out: Annotated[Path, typer.Option(help="Scorer folder to write.")] = Path("scorer"),
    target_risk: Annotated[float, typer.Option(
        help="Abstention: the largest error rate among answered questions the threshold "
             "allows (see recal serve --abstain).")] = 0.1,
    risk_delta: Annotated[float, typer.Option(
        help="Abstention: the probability that the threshold's risk exceeds --target-risk "
             "(its guarantee holds with probability 1 - delta).")] = 0.1,
    sign_key_env: SignKeyEnvOpt = None,
) -> None:
    """Fit one recalibrator and export it as a calibrated scorer (JSON data, no pickle), with an
    abstention threshold of known risk chosen on the calibration split."""
    from recal.abstention import AbstentionConfig
    from recal.repair import FitConfig, export_scorer
    from recal.runstore import RunStore
    from recal.scorer_format import signing_key
    from recal.tables import abstention_summary, export_summary

    with reported():
        key = signing_key(sign_key_env)  # before any work: an unset variable is refused
        config = FitConfig(methods=(method,), scorer=confidence, collapse=collapse,
                           calibration_fraction=calibration_fraction, seed=seed)
        rule = AbstentionConfig(target_risk=target_risk, delta=risk_delta)
        artifact = export_scorer(RunStore.open(run), method, config, abstention=rule)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; name a folder for the scorer")
        folder = artifact.save(out, key=key)
    typer.echo(export_summary(method, artifact.metrics, folder))
    if key is not None:
        typer.echo(f"signed: {folder / 'signature.json'}")
    typer.echo(abstention_summary(artifact.abstention))


def apply(
    run: RunArg,
    scorer: Annotated[Path, typer.Option(help="An exported scorer folder.")] = Path("scorer"),
    out: Annotated[Path | None, typer.Option(help="JSONL to write (default: RUN/calibrated.jsonl)")]
        = None,
    sign_key_env: SignKeyEnvOpt = None,
) -> None:
    """Add calibrated confidences to a stored run, scored by the exported scorer itself."""
    from recal.repair import apply_scorer
    from recal.runstore import RunStore
    from recal.scorer import load_scorer
    from recal.scorer_format import signing_key

    with reported():
        artifact = load_scorer(scorer, key=signing_key(sign_key_env))
        rows = apply_scorer(RunStore.open(run), artifact)
    target = out or run / "calibrated.jsonl"
    with reported(), target.open("w", encoding="utf-8") as f:
        f.writelines(dumps_line(row.to_dict()) for row in rows)
    typer.echo(f"{len(rows)} calibrated confidences written to {target}")


# The options of `recal tune` (each LoRA method takes some of them; see recal.tuning).
TuneMethodOpt = Annotated[str, typer.Option(help="distribution, confidence_head or amortised.")]
TargetOpt = Annotated[str | None, typer.Option(
    help="distribution: reference, sharpen or correct_mix; amortised: modal_share or correct.")]
ReferenceOpt = Annotated[Path | None, typer.Option(
    help="Reference model's run folder (distribution --target reference).")]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Most epochs.")]
PatienceOpt = Annotated[int | None, typer.Option(
    min=1, help="Epochs without a better validation loss before stopping.")]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate of the adapter.")]
RankOpt = Annotated[int | None, typer.Option(min=1, help="LoRA rank.")]
TrainLayersOpt = Annotated[int | None, typer.Option(
    min=0, help="LoRA on the last N layers (0: all layers).")]
BatchSizeOpt = Annotated[int | None, typer.Option(min=1, help="Rows per step.")]
MaxStepsOpt = Annotated[int | None, typer.Option(min=1, help="Stop after N steps.")]
EvalSamplesOpt = Annotated[int | None, typer.Option(
    min=1, help="distribution: answers per held-out question from the tuned model.")]
EvalLimitOpt = Annotated[int | None, typer.Option(
    min=2, help="Judge on the first N held-out questions (default: all).")]
HeadLrOpt = Annotated[float | None, typer.Option(help="amortised: learning rate of the head.")]
AnswersOpt = Annotated[int | None, typer.Option(
    min=1, help="confidence_head: graded answers per training question.")]
KlWeightOpt = Annotated[float | None, typer.Option(
    help="confidence_head: weight of the KL regulariser on the model's answers.")]
MaxClassesOpt = Annotated[int | None, typer.Option(
    min=1, help="distribution: classes per question trained on.")]


def tune(
    run: RunArg, method: TuneMethodOpt = "amortised", target: TargetOpt = None,
    reference: ReferenceOpt = None, epochs: EpochsOpt = None, patience: PatienceOpt = None,
    lr: LrOpt = None, rank: RankOpt = None, train_layers: TrainLayersOpt = None,
    batch_size: BatchSizeOpt = None, max_steps: MaxStepsOpt = None,
    eval_samples: EvalSamplesOpt = None, eval_limit: EvalLimitOpt = None,
    head_lr: HeadLrOpt = None, answers_per_question: AnswersOpt = None,
    kl_weight: KlWeightOpt = None, max_classes: MaxClassesOpt = None,
    collapse: CollapseOpt = "normalized", calibration_fraction: FractionOpt = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split (as recal fit's).")] = 0,
    resamples: ResamplesOpt = 1000,
    out: Annotated[Path | None, typer.Option(help="Folder (default: RUN/tune-METHOD).")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Repair by LoRA fine-tuning; judged on the held-out split of `recal fit`. Resumable: run
    the same command again after a kill."""
    from recal.flows import tuning_config
    from recal.runstore import RunStore
    from recal.tuning import tune as run_tune

    options = {"target": target, "reference": str(reference) if reference else None,
               "max_epochs": epochs, "patience": patience, "learning_rate": lr, "rank": rank,
               "batch_size": batch_size, "max_steps": max_steps, "eval_samples": eval_samples,
               "eval_limit": eval_limit, "head_learning_rate": head_lr,
               "answers_per_question": answers_per_question, "kl_weight": kl_weight,
               "max_classes": max_classes}
    layers = {} if train_layers is None else {"train_layers": train_layers or None}  # 0: all
    with reported():
        config = tuning_config(method, options, collapse=collapse, seed=seed,
                               calibration_fraction=calibration_fraction,
                               n_resamples=resamples, **layers)
        folder = out or run / f"tune-{config.method}"
        report = run_tune(RunStore.open(run), config, folder, progress=progress)
    typer.echo(report.table())
    typer.echo(f"\nadapter: {report.adapter}\nscorer: {folder / 'scorer'}\n"
               f"report: {folder / 'report.json'}")
