"""The ``ptft`` command: LightningCLI subcommands (fit, validate, test, predict) plus ``export``.

    ptft fit -c configs/pretrain/autoencoder_imagenette.yaml [-c more.yaml] [--model.x=...]
    ptft export path/to/last.ckpt exports/my_backbone
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from ptft.errors import PtftError
from ptft.handoff import export_backbone


class RunConfigSaver(SaveConfigCallback):
    """Saves the run's full config into the run's own folder, never over another run's.

    LightningCLI's default writes ``<log_dir>/config.yaml``, and with W&B ``log_dir`` is the shared
    ``save_dir``, so the second run in a folder fails. Here a W&B run's config goes next to its
    checkpoints (``<save_dir>/<project>/<run id>/``), other loggers use their versioned ``log_dir``,
    and without a logger a name already taken gets a numbered suffix.
    """

    def __init__(self, parser, config, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Called on rank zero only: nothing here may broadcast (trainer.log_dir would).
        logger = trainer.logger
        if isinstance(logger, WandbLogger):
            folder = Path(logger.save_dir or ".") / str(logger.name) / str(logger.version)
        else:
            folder = Path(getattr(logger, "log_dir", None) or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path, n = folder / self.config_filename, 1
        while path.exists():
            path, n = folder / f"{Path(self.config_filename).stem}-{n}.yaml", n + 1
        self.parser.save(self.config, str(path), skip_none=False, multifile=self.multifile)


class PtftCLI(LightningCLI):
    """LightningCLI in subclass mode with ptft's links from data to model."""

    def add_arguments_to_parser(self, parser) -> None:
        # Applied only where the chosen model has the argument.
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def _check_data(self) -> None:
        check = getattr(self.model, "check_data", None)
        if callable(check):
            check(self.datamodule)

    before_fit = before_validate = before_test = before_predict = _check_data

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        path = checkpoint and (checkpoint.last_model_path or checkpoint.best_model_path)
        if path and self.trainer.is_global_zero:
            print(f"ptft: checkpoint {path}\nptft: export the backbone with: ptft export {path} OUT_DIR")


def run_cli(args: list[str] | None) -> PtftCLI:
    """Run a LightningCLI subcommand in this process and return the CLI (trainer, model, datamodule)."""
    return PtftCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        auto_configure_optimizers=False,
        args=args,
    )


def export_main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ptft export", description="Write the backbone of a ptft checkpoint as safetensors + JSON.")
    parser.add_argument("checkpoint", help="a ptft .ckpt (pretraining or fine-tuning)")
    parser.add_argument("out_dir", help="folder for backbone.safetensors and backbone.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export in out_dir")
    options = parser.parse_args(args)
    try:
        out = export_backbone(options.checkpoint, options.out_dir, overwrite=options.overwrite)
    except PtftError as error:
        parser.exit(2, f"ptft export: error: {error}\n")
    print(f"ptft: wrote {out / 'backbone.safetensors'} and {out / 'backbone.json'}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("ptft {fit,validate,test,predict} -c CONFIG [...]   LightningCLI subcommands (details below)\n"
              "ptft export CHECKPOINT OUT_DIR [--overwrite]      write a checkpoint's backbone as safetensors + JSON\n")
    if args and args[0] == "export":
        export_main(args[1:])
        return
    try:
        run_cli(None if argv is None else args)  # None: LightningCLI reads sys.argv itself
    except Exception as error:
        bad_input = _ptft_error(error)
        if bad_input is None:
            raise
        sys.exit(f"ptft: error: {bad_input}")  # bad input: one line naming the file or key, no traceback


def _ptft_error(error: BaseException) -> PtftError | None:
    """The PtftError behind ``error``. jsonargparse turns an error raised while it instantiates a
    class into a ValueError that only quotes it, so the latest PtftError counts when quoted."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, PtftError):
        cause = cause.__cause__ or cause.__context__
    latest = PtftError.latest
    if cause is None and latest is not None and str(latest) in str(error):
        cause = latest
    return cause


if __name__ == "__main__":
    main()
