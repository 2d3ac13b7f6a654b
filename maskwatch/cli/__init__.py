"""maskwatch's command line: a thin shell over the library, one module per family of commands.

``photos`` (detect, explain, extract-faces), ``batch``, ``live`` (video, watch), ``serve``, ``evaluate``
(evaluate, evaluate-detection), ``train`` (train, train-detector, soup), ``models``; ``options`` turns the settings
table into options and reads settings files; ``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import MaskwatchError
from . import batch, evaluate, live, models, photos, serve, train
from .common import EPILOG, _err, _Formatter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskwatch", description="Find faces and tell whether each wears a mask.", epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"maskwatch {__import__('maskwatch').__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers: dict[str, argparse.ArgumentParser] = {}
    p.set_defaults(_subparsers=subparsers)

    def cmd(name: str, help: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog="example:\n  " + example, formatter_class=_Formatter)
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        sp.add_argument("--config", metavar="FILE", help="settings file (TOML or YAML); keys are this command's option names "
                        "(a repeatable one takes a value or a list), paths in it are relative to the current folder as on "
                        "the command line, and options given on the command line win")
        subparsers[name] = sp
        return sp

    photos.parser_detect(cmd)
    photos.parser_explain(cmd)
    photos.parser_extract_faces(cmd)
    batch.parser_batch(cmd)
    live.parser_video(cmd)
    live.parser_watch(cmd)
    serve.parser_serve(cmd)
    evaluate.parser_evaluate(cmd)
    evaluate.parser_evaluate_detection(cmd)
    train.parser_train(cmd)
    train.parser_train_detector(cmd)
    train.parser_soup(cmd)
    models.parser_models(cmd)
    return p


COMMANDS = {
    "detect": photos.cmd_detect, "explain": photos.cmd_explain, "extract-faces": photos.cmd_extract_faces,
    "batch": batch.cmd_batch, "video": live.cmd_video, "watch": live.cmd_watch, "serve": serve.cmd_serve,
    "evaluate": evaluate.cmd_evaluate, "evaluate-detection": evaluate.cmd_evaluate_detection, "train": train.cmd_train,
    "train-detector": train.cmd_train_detector, "soup": train.cmd_soup, "models": models.cmd_models,
}



def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    subparsers = parser.get_default("_subparsers")
    words = list(sys.argv[1:] if argv is None else argv)
    required = [a for sp in subparsers.values() for a in sp._actions if a.required and a.option_strings]  # --out
    if any(w == "--config" or w.startswith("--config=") for w in words):
        for a in required:  # the settings file may give them: checked below, once it is read
            a.required = False
    args = parser.parse_args(words)
    try:
        sp = subparsers[args.command]
        lists: dict[str, Any] = {}
        if getattr(args, "config", None):
            from .options import load_settings_file

            given = load_settings_file(args.config, sp)
            appended = {a.dest for a in sp._actions if isinstance(a, argparse._AppendAction)}
            lists = {k: v for k, v in given.items() if k in appended}  # argparse would add the command line's to them
            sp.set_defaults(**{k: v for k, v in given.items() if k not in lists})
            for a in required:
                a.required = a in sp._actions and sp.get_default(a.dest) is None
            args = parser.parse_args(words)  # the command line wins over the file; a required option missing from both is an error
        for dest, value in lists.items():
            if getattr(args, dest) is None:  # not on the command line: the file's list
                setattr(args, dest, value)
        return COMMANDS[args.command](args)
    except MaskwatchError as e:
        _err(f"maskwatch {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        _err("maskwatch: interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # a folder that cannot be created, a full disk, a read-only file system ...
        where = f" {e.filename}" if e.filename else ""
        _err(f"maskwatch {args.command}: error: cannot write or read{where}: {e.strerror or e}; check the path, its "
             "permissions and the free space")
        return 2


if __name__ == "__main__":
    sys.exit(main())
