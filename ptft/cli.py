"""The ``ptft`` command: LightningCLI subcommands (fit, validate, test, predict) plus ``export``,
``inspect``, ``sample``, ``generate``, ``transcribe`` and ``sweep``.

    ptft fit -c configs/pretrain/autoencoder_imagenette.yaml [-c more.yaml] [--model.x=...]
    ptft export path/to/last.ckpt exports/my_backbone [--format hf|timm]
    ptft inspect path/to/last.ckpt | exports/my_backbone | hf_model_folder/ | resnet18.pth
    ptft sample path/to/gan/last.ckpt --num 64 --out samples/
    ptft generate path/to/clm/last.ckpt --prompt "The game" --max_new_tokens 50
    ptft generate path/to/seq2seq/last.ckpt --input_file sources.txt --out outputs.txt --beam_size 4
    ptft transcribe path/to/ctc/last.ckpt speech.wav [more.flac ...] [--out transcripts.jsonl]
    ptft sweep configs/sweeps/gan_imagenette.yaml --count 8 [--trainer.max_steps=50 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from ptft.data.spec import DataSpec
from ptft.errors import ConfigError, OutputExistsError, PtftError, one_line
from ptft.handoff import export_backbone, read_pretrained
from ptft.inspection import describe
from ptft.interop.export import EXPORT_FORMATS, export_foreign
from ptft.parse_errors import one_line_parse_error
from ptft import quiet
from ptft.tasks.base import PtftTask
from ptft.callbacks import ExperimentConfig, PreemptionCheckpoint, RunFolders
from ptft.callbacks.preemption import noting_sigterm
from ptft.reliability import PREEMPTED_EXIT_CODE, experiment_config, find_last_checkpoint
from ptft.schedules import known_run_length


class RunConfigSaver(SaveConfigCallback):
    """Saves the run's full config into the run's own folder, never over another run's.

    LightningCLI's default writes ``<log_dir>/config.yaml``, and with W&B ``log_dir`` is the shared
    ``save_dir``, so the second run in a folder fails. Here a W&B run's config goes next to its
    checkpoints (``<save_dir>/<project>/<run id>/``), other loggers use their versioned ``log_dir``,
    and without a logger a name already taken gets a numbered suffix.

    The config is written when the run starts (training, or the loop of validate/test/predict), not at
    setup: a run that fails before it starts (bad data, a schedule longer than the run) writes none.
    """

    def __init__(self, parser, config, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = stage  # saved once the run starts

    def _save_once(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.already_saved and trainer.is_global_zero:
            self.save_config(trainer, pl_module, self._stage)
        self.already_saved = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_once(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # fit's sanity check comes before training starts
            self._save_once(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_once(trainer, pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_once(trainer, pl_module)

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


class PtftArgumentParser(LightningArgumentParser):
    """Reports a bad command line or config value as one line, ``ptft: error: KEY: ...``."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        self._logger.error(message)
        sys.stderr.write(f"ptft: error: {one_line_parse_error(message)} (see `ptft fit --help`)\n")
        self.exit(2)


class PtftCLI(LightningCLI):
    """LightningCLI in subclass mode. Data flows one way: the DataModule's ``spec``
    (:class:`~ptft.data.spec.DataSpec`) is linked into the model as ``model.data_spec``, a backbone
    whose ``image_size`` is left None (a ViT's default) gets ``data.image_size`` through the config,
    and a fine-tuned model's ``pretrained`` checkpoint gives the data its tokenizer through the
    config (``data.tokenizer``, when the DataModule takes one and it is not given)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.spec", "model.init_args.data_spec", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model, data = config.get("model"), config.get("data")
        if model is None or data is None:
            return
        model_args, data_args = model.get("init_args") or {}, data.get("init_args") or {}
        backbone_args = (model_args.get("backbone") or {}).get("init_args") or {}
        if "image_size" in backbone_args and backbone_args["image_size"] is None:  # left unset (a ViT): the data's size
            backbone_args["image_size"] = data_args.get("image_size")
        pretrained = model_args.get("pretrained")
        if "tokenizer" in data_args and data_args["tokenizer"] is None and pretrained is not None and _holds_tokenizer(pretrained):
            data_args["tokenizer"] = pretrained

    def _check_data(self) -> None:
        """Before a trainer writes anything: the model must be able to use the data its spec describes."""
        if not isinstance(self.model, PtftTask):
            return
        spec = getattr(self.datamodule, "spec", None)
        if not isinstance(spec, DataSpec):
            raise ConfigError(
                f"data: {type(self.datamodule).__name__} has no spec: a DataModule describes its data for the model "
                "in a ptft.data.spec.DataSpec attribute named spec (see docs/extending.md)"
            )
        self.model.check_data(spec)

    def _before_run(self) -> None:
        """Before any subcommand runs: check the model against the data's spec and (fit) the run's
        length, the optimizers' arguments and the LR schedule against the run's length when it is known
        without the data, before the data is prepared (tokenizers trained, files tokenized); then make
        the W&B loggers start quietly."""
        self._check_data()
        if self.subcommand == "fit":
            for option in ("max_steps", "max_epochs"):
                if getattr(self.trainer, option) == 0:
                    raise ConfigError(f"trainer.{option}: 0 trains nothing; give a number >= 1, or -1 for no limit")
            if isinstance(self.model, PtftTask):
                self.model.check_optimizers()
            self._drop_lr_monitors_without_a_logger()
        run_steps = known_run_length(self.trainer) if self.subcommand == "fit" else None
        if run_steps is not None and isinstance(self.model, PtftTask):
            self.model.check_schedule(run_steps)
        quiet.prepare_loggers(self.trainer.loggers)

    before_validate = before_test = before_predict = _before_run

    def _drop_lr_monitors_without_a_logger(self) -> None:
        """``--trainer.logger=false`` with a config's LearningRateMonitor: the monitor has nowhere to
        log (Lightning would stop the run at its start), so it is dropped, and the run says so."""
        monitors = [c for c in self.trainer.callbacks if isinstance(c, LearningRateMonitor)]
        if monitors and not self.trainer.loggers:
            self.trainer.callbacks = [c for c in self.trainer.callbacks if c not in monitors]
            if self.trainer.is_global_zero:
                print("ptft: no logger (trainer.logger=false): the LearningRateMonitor of the config is dropped")

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        """The trainer; a value it refuses (``max_steps=-5``) is a ConfigError naming the option."""
        try:
            return super().instantiate_trainer(**kwargs)
        except MisconfigurationException as error:
            option = re.match(r"`(\w+)`", str(error))
            raise ConfigError(f"trainer{'.' + option.group(1) if option else ''}: {error}") from None

    def _run_subcommand(self, subcommand: str) -> None:
        """Runs the subcommand; a run that fails before it starts (before training, or before the
        loop of validate/test/predict) leaves no run folder (:class:`~ptft.callbacks.RunFolders`)."""
        folders = RunFolders(self.trainer)
        self.trainer.callbacks.append(folders)
        try:
            super()._run_subcommand(subcommand)
        except Exception:
            folders.remove_if_not_started(self.trainer)
            raise

    def _parse_ckpt_path(self) -> None:
        """Lightning 2.6 merges the hyperparameters saved in ``--ckpt_path`` into the config, which
        fails for ptft's subclass-mode tasks (linked data values such as ``image_size`` come back
        as unknown keys). A ptft run resumes with the command it started with, so the config is
        complete already; the checkpoint is read once, by the trainer (weights_only=True)."""

    def before_fit(self) -> None:
        """Checks the model against the data's spec and the LR schedule against the run's length
        (when it is known without the data), records the run's experiment in its checkpoints, and resolves ``--ckpt_path last`` to the
        newest last checkpoint of the same experiment (None: start from scratch), saying why."""
        self._before_run()
        experiment = experiment_config(self.config[self.subcommand].as_dict())
        self.trainer.callbacks.append(ExperimentConfig(experiment))
        if not isinstance(self.model, PtftTask):  # a PtftTask adds its own; SIGTERM stops any run safely
            self.trainer.callbacks.append(PreemptionCheckpoint())
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            found, notes = find_last_checkpoint(self.trainer, experiment)
            config["ckpt_path"] = None if found is None else str(found)
            if self.trainer.is_global_zero:
                print("\n".join(f"ptft: --ckpt_path last: {note}" for note in notes))

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        path = checkpoint and (checkpoint.last_model_path or checkpoint.best_model_path)
        if path and self.trainer.is_global_zero:
            print(f"ptft: checkpoint {path}\nptft: export the backbone with: ptft export {path} OUT_DIR")


def _holds_tokenizer(pretrained: str) -> bool:
    """Whether ``model.pretrained`` holds a tokenizer (a text model, or a speech model's character
    vocabulary); True when it cannot be read, so the data reports what is wrong with it."""
    try:
        return read_pretrained(pretrained).tokenizer is not None
    except PtftError:
        return True


def run_cli(args: list[str] | None, run: bool = True, callbacks: list[pl.Callback] | None = None) -> PtftCLI:
    """Run a LightningCLI subcommand in this process and return the CLI (trainer, model, datamodule).
    With ``run=False``, ``args`` carry no subcommand and the CLI only builds the objects. ``callbacks``
    are added to the trainer's (not to the saved config, nor to the experiment a resume matches)."""
    quiet.install()
    return PtftCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        parser_class=PtftArgumentParser,
        auto_configure_optimizers=False,
        trainer_defaults={"callbacks": list(callbacks)} if callbacks else None,
        args=args,
        run=run,
    )


def export_main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ptft export", description="Write the backbone of a ptft checkpoint as safetensors + JSON "
                                     "(ptft), or as a Hugging Face (hf) or timm (timm) model folder.")
    parser.add_argument("checkpoint", help="a ptft .ckpt (pretraining or fine-tuning), export folder, or a model ptft imports")
    parser.add_argument("out_dir", help="the output folder")
    parser.add_argument("--format", default="ptft", choices=EXPORT_FORMATS,
                        help="ptft: backbone.json + <module>.safetensors (default); hf: config.json + model.safetensors for "
                             "transformers' AutoModel; timm: config.json + model.safetensors for timm.create_model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export in out_dir")
    parser.add_argument("--check", action="store_true", help="hf/timm: first load the export in transformers or timm and compare "
                        "its outputs with ptft's on random inputs (needs pip install 'ptft[interop]'); nothing is written if they differ")
    options = parser.parse_args(args)
    if options.check and options.format == "ptft":
        parser.error("--check compares an export with transformers or timm: give --format hf or --format timm")
    try:
        if options.format == "ptft":
            out, difference = export_backbone(options.checkpoint, options.out_dir, overwrite=options.overwrite), None
        else:
            out, difference = export_foreign(options.checkpoint, options.out_dir, options.format, options.overwrite, options.check)
    except PtftError as error:
        parser.exit(2, f"ptft export: error: {one_line(error)}\n")
    print(f"ptft: wrote {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))} in {out}")
    if difference is not None:
        print(f"ptft: checked: {options.format}'s outputs equal ptft's within {difference:.1e}")


def inspect_main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ptft inspect", description="Print what a checkpoint, export or foreign model holds.")
    parser.add_argument("path", help="a ptft .ckpt or export folder, a Hugging Face folder, a timm .safetensors or a torchvision .pth")
    options = parser.parse_args(args)
    try:
        print(describe(options.path))
    except PtftError as error:
        parser.exit(2, f"ptft inspect: error: {one_line(error)}\n")


def sample_main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ptft sample", description="Write images generated by a GAN checkpoint as PNGs plus grid.png.")
    parser.add_argument("checkpoint", help="a .ckpt written by ptft.tasks.GANPretraining")
    parser.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    parser.add_argument("--out", required=True, help="folder for sample_00000.png ... and grid.png")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--batch_size", type=int, default=256, help="images generated at once")
    parser.add_argument("--no_ema", action="store_true", help="use the raw generator instead of its EMA")
    parser.add_argument("--overwrite", action="store_true", help="replace samples already in --out")
    options = parser.parse_args(args)
    from ptft.tasks.gan import load_generator, write_samples

    try:
        generator = load_generator(options.checkpoint, ema=not options.no_ema)
        out = write_samples(generator, options.num, options.out, options.seed, options.batch_size, options.overwrite)
    except PtftError as error:
        parser.exit(2, f"ptft sample: error: {one_line(error)}\n")
    print(f"ptft: wrote {options.num} samples and {out / 'grid.png'}")


def generate_main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ptft generate", description="Print text sampled from a causal-LM checkpoint, or the output text "
                                     "of an encoder-decoder model (translation, summarisation) for input texts.")
    parser.add_argument("checkpoint", help="a .ckpt of ptft.tasks.CausalLMPretraining, or a .ckpt or export folder of an encoder-decoder model "
                                           "(ptft.tasks.Seq2SeqFineTuning)")
    causal = parser.add_argument_group("causal LM")
    causal.add_argument("--prompt", default=None, help="text to continue (default: start of a text)")
    causal.add_argument("--max_new_tokens", type=int, default=100, help="number of tokens to generate (default 100)")
    seq2seq = parser.add_argument_group("encoder-decoder model")
    seq2seq.add_argument("--input", help="one input text")
    seq2seq.add_argument("--input_file", help="a UTF-8 file of input texts, one per line")
    seq2seq.add_argument("--out", help="also write the outputs to this file, one per line")
    seq2seq.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    seq2seq.add_argument("--beam_size", type=int, default=4, help="beam search width; 1 = greedy or sampling (default 4)")
    seq2seq.add_argument("--length_penalty", type=float, default=1.0, help="a hypothesis scores sum log p / length ** this (default 1.0)")
    seq2seq.add_argument("--max_length", type=int, default=None, help="longest output in tokens (default: the decoder's max_target_length)")
    seq2seq.add_argument("--no_repeat_ngram_size", type=int, default=0, help="no n-gram of this size twice in an output (default 0: off)")
    seq2seq.add_argument("--batch_size", type=int, default=32, help="inputs generated at once (default 32)")
    seq2seq.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    sampling = parser.add_argument_group("sampling (both)")
    sampling.add_argument("--temperature", type=float, default=None, help="sampling temperature; 0 = greedy (default: 1.0 for a causal LM, "
                                                                         "0 for an encoder-decoder model)")
    sampling.add_argument("--top_k", type=int, default=None, help="sample among the k likeliest tokens (default: all)")
    sampling.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    options = parser.parse_args(args)
    import torch

    from ptft.text_to_text import is_seq2seq

    generator = torch.Generator().manual_seed(options.seed)
    try:
        pretrained = read_pretrained(options.checkpoint) if Path(options.checkpoint).exists() else None
        if pretrained is not None and is_seq2seq(pretrained):
            _generate_seq2seq(parser, options, pretrained, generator)
            return
        if options.input is not None or options.input_file is not None:
            raise ConfigError(f"--input and --input_file are for encoder-decoder models; {options.checkpoint} is not one (a causal LM takes --prompt)")
        if options.max_new_tokens < 1:
            parser.exit(2, f"ptft generate: error: --max_new_tokens must be >= 1, got {options.max_new_tokens}\n")
        from ptft.tasks.language_model import load_causal_lm

        model = load_causal_lm(options.checkpoint)
        prompt = options.prompt or ""
        temperature = 1.0 if options.temperature is None else options.temperature
        new = model.generate(model.encode_prompt(prompt), options.max_new_tokens, temperature, options.top_k, generator)
    except PtftError as error:
        parser.exit(2, f"ptft generate: error: {one_line(error)}\n")
    print(prompt + model.tokenizer.decode(new))  # the prompt as given, then the new text


def _generate_seq2seq(parser: argparse.ArgumentParser, options: argparse.Namespace, pretrained, generator) -> None:
    """``ptft generate`` of an encoder-decoder model: outputs of ``--input`` or ``--input_file``, printed and written to ``--out``."""
    from ptft.data.text_files import check_text_file, read_text, split_lines
    from ptft.seq2seq_generation import GenerationSettings
    from ptft.temp_files import write_text_output
    from ptft.text_to_text import TextToText

    if options.prompt is not None:
        raise ConfigError("an encoder-decoder model maps --input (or --input_file) to an output; --prompt is for causal LMs")
    if (options.input is None) == (options.input_file is None):
        raise ConfigError("give exactly one of --input TEXT and --input_file FILE")
    if options.out is not None and Path(options.out).exists() and not options.overwrite:
        raise OutputExistsError(f"{options.out} exists; pass --overwrite to replace it")
    if options.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {options.batch_size}")
    if options.input_file is not None:
        texts = split_lines(read_text(check_text_file(Path(options.input_file), "--input_file")))
    else:
        texts = [options.input]
    model = TextToText(pretrained, options.device)
    settings = GenerationSettings(options.max_length or model.model.max_target_length, options.beam_size, options.length_penalty,
                                  options.no_repeat_ngram_size, temperature=options.temperature or 0.0, top_k=options.top_k)
    outputs = model(texts, settings, options.batch_size, generator)
    if options.out is not None:
        write_text_output(options.out, "".join(f"{line}\n" for line in outputs), options.overwrite)
    print("\n".join(outputs))


def transcribe_main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ptft transcribe", description="Print one transcript per audio file, from a CTC speech model.")
    parser.add_argument("model", help="a .ckpt written by ptft.tasks.CTCFineTuning, or its `ptft export` folder")
    parser.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, ...; any sample rate and channel count)")
    parser.add_argument("--out", help="also write the transcripts as a JSONL manifest (audio_filepath, text)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances transcribed at once (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    options = parser.parse_args(args)
    import time

    from ptft.transcribe import Transcriber, write_transcripts

    try:
        out = Path(options.out) if options.out else None
        if out is not None and out.exists() and not options.overwrite:
            raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
        transcriber = Transcriber(options.model, options.device)
        start = time.perf_counter()
        texts, seconds = transcriber.transcribe_files(options.audio, options.batch_size)
        elapsed = time.perf_counter() - start
        if out is not None:
            write_transcripts(out, options.audio, texts, options.overwrite)
    except PtftError as error:
        parser.exit(2, f"ptft transcribe: error: {one_line(error)}\n")
    print("\n".join(texts))
    print(f"ptft: transcribed {len(texts)} files, {seconds:.1f} s of audio in {elapsed:.2f} s "
          f"(real-time factor {elapsed / max(seconds, 1e-9):.3f})", file=sys.stderr)


def sweep_main(args: list[str]) -> None:
    from ptft.sweep import main as sweep  # imports optuna only when sweeping

    sweep(args)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    quiet.install()  # harmless library messages, for every subcommand
    if not args or args[0] in ("-h", "--help"):
        print("ptft {fit,validate,test,predict} -c CONFIG [...]   LightningCLI subcommands (details below)\n"
              "ptft export CHECKPOINT OUT_DIR [--format ptft|hf|timm] [--overwrite]\n"
              "                                                  write a checkpoint's backbone as safetensors + JSON\n"
              "ptft inspect PATH                                 print what a checkpoint, export or HF/timm/torchvision model holds\n"
              "ptft sample CHECKPOINT --num N --out DIR          write N images from a GAN checkpoint, plus grid.png\n"
              "ptft generate CHECKPOINT --prompt TEXT --max_new_tokens N [--temperature T --top_k K]\n"
              "                                                  print text sampled from a causal-LM checkpoint\n"
              "ptft generate MODEL --input TEXT | --input_file F [--out FILE --beam_size B ...]\n"
              "                                                  print the outputs of an encoder-decoder model\n"
              "ptft transcribe MODEL AUDIO... [--out FILE]       print one transcript per audio file (CTC speech model)\n"
              "ptft sweep SWEEP.yaml --count N [overrides...]    run a W&B-format sweep locally with Optuna (resumable)\n")
    commands = {"export": export_main, "inspect": inspect_main, "sample": sample_main, "generate": generate_main, "transcribe": transcribe_main, "sweep": sweep_main}
    if args and args[0] in commands:
        commands[args[0]](args[1:])
        return
    try:
        with noting_sigterm() if args[:1] == ["fit"] else contextlib.nullcontext():  # a SIGTERM in setup: stop after step 1
            run_cli(None if argv is None else args)  # None: LightningCLI reads sys.argv itself
    except SIGTERMException as stop:  # preempted: last.ckpt was saved after the current batch
        if os.environ.get("LOCAL_RANK", "0") != "0":
            sys.exit(0)  # a rank Lightning started: a non-zero exit would make the launching rank SIGKILL the others
        saved = getattr(stop, "ptft_checkpoint", None)
        print(f"ptft: stopped by SIGTERM; saved {saved}; continue with the same command and --ckpt_path last", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_CODE)
    except Exception as error:
        bad_input = _ptft_error(error)
        if bad_input is None:
            raise
        print(f"ptft: error: {one_line(bad_input)}", file=sys.stderr)  # one line naming the file or key, no traceback
        sys.exit(bad_input.exit_code)


def _ptft_error(error: BaseException) -> PtftError | None:
    """The PtftError behind ``error``. jsonargparse turns an error raised while it instantiates a
    class into a ValueError that only quotes it, so the latest PtftError counts when quoted."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, PtftError):
        cause = cause.__cause__ or cause.__context__
    latest = PtftError.latest
    if cause is None and latest is not None and one_line(latest) in one_line(error):
        cause = latest
    return cause


if __name__ == "__main__":
    main()
