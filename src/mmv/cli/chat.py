"""`mmv chat`: one-shot answers, piped prompts, or an interactive streaming REPL about images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from mmv.cli.common import MODEL_FLAGS, emit_json, handle_errors, options
from mmv.cli.model_options import ModelChoice, load_chosen_model, takes_model_options


@handle_errors(flags={**MODEL_FLAGS, "frames": "--frames N"})
@takes_model_options
def chat(
    images: list[Path] = typer.Argument(
        None,
        help="Images to talk about (placed in order at <image> markers, or before the prompt); videos (.mp4, .webm, "
        ".gif, ...) are sampled into --frames images, each after its timestamp.",
    ),
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="A .pth/.safetensors file, a transformers folder, a run "
        "directory or a downloaded name (e.g. minimind-3v).",
    ),
    *,
    choice: ModelChoice,  # --vision, --tokenizer, --device ... (takes_model_options)
    prompt: str = typer.Option(
        None, "--prompt", "-p", help="Ask once and exit; without it, start a REPL (or answer stdin one line at a time)."
    ),
    system: str = typer.Option(None, help="A system prompt."),
    max_new_tokens: int = typer.Option(512, min=1, help="Stop after this many new tokens."),
    temperature: float = typer.Option(0.85, min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(0.85, min=0.0, max=1.0, help="Nucleus sampling threshold."),
    top_k: int = typer.Option(50, min=0, help="Sample among the k most likely tokens (0 = all)."),
    repetition_penalty: float = typer.Option(1.0, min=0.01, help="Sign-aware penalty on tokens already seen."),
    seed: int = typer.Option(None, help="Seed for sampling (reproducible replies)."),
    think: bool = typer.Option(False, "--think", help="Open the <think> block instead of skipping it."),
    frames: int = typer.Option(
        None, metavar="N", help="Frames sampled evenly in time from each video [default: as the run trained, else 8]."
    ),
) -> None:
    """Talk about one or more images with a MiniMind-V model."""
    from mmv.chat import ChatSession
    from mmv.cli.chat_repl import note_positions, reply_summary, run_repl
    from mmv.device import check_device, check_dtype
    from mmv.sampling import SamplingConfig
    from mmv.vision_input.video import DEFAULT_FRAMES

    check_device(choice.device)
    check_dtype(choice.dtype)
    paths = images or []
    opened, lead = open_inputs(paths, frames or DEFAULT_FRAMES)  # fail on bad images and videos before loading
    if lead:
        place_video_prompt(lead, prompt)  # refuse what cannot be asked before loading
    interactive = prompt is None and sys.stdin.isatty()
    loaded, threads = load_chosen_model(
        model, choice, frames=frames, need_vision=bool(opened) or interactive, spinner=interactive
    )
    if lead and loaded.frames != (frames or DEFAULT_FRAMES):  # a run that trained on another count of frames
        opened, lead = open_inputs(paths, loaded.frames)
    if lead:
        prompt = place_video_prompt(lead, prompt)
        check_video_budget(loaded, [image for _, image in opened])
    sampling = SamplingConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    session = ChatSession(loaded, sampling, system=system, thinking=think)
    for name, image in opened:
        session.attach(name, image)
    if prompt is None:
        run_repl(session, interactive=interactive, threads=threads)
        return
    reply = session.ask(prompt, on_text=None if options.json else _write_stdout)
    if not options.json:
        sys.stdout.write("\n")
        sys.stdout.flush()
    note_positions(session, reply)
    emit_json({**reply_summary(reply), "threads": threads, **({"frames": loaded.frames} if lead else {})})


def open_inputs(paths: list[Path], frames: int) -> tuple[list[tuple[str, Any]], str]:
    """The pictures to attach, in order, and with a video among them the text that introduces each one (a video's
    frames each after its timestamp, an image after nothing); the text is empty without videos."""
    from mmv.images import open_image
    from mmv.vision_input.video import is_video, sample_frames, video_text

    opened: list[tuple[str, Any]] = []
    lead: list[str] = []
    several = sum(map(is_video, paths)) > 1  # one video is laid out as training lays out a row's; several by name
    for path in paths:
        if is_video(path):
            sampled = sample_frames(path, frames)
            opened += [(f"{path}@{frame.seconds:.1f}s", frame.image) for frame in sampled]
            lead.append(video_text(sampled, path.name if several else None))
        else:
            opened.append((str(path), open_image(path)))
            lead.append("<image>\n")
    return opened, "".join(lead) if any(is_video(path) for path in paths) else ""


def place_video_prompt(lead: str, prompt: str | None) -> str:
    """The frames' text before the question; a prompt with its own <image> markers cannot place a video's."""
    from mmv.config import IMAGE_MARKER
    from mmv.errors import MmvError

    if prompt is None:
        raise MmvError("a video is asked about with --prompt (the REPL takes images only)")
    if IMAGE_MARKER in prompt:
        raise MmvError("a prompt with a video takes no <image> markers: the frames are placed before it")
    return lead + prompt


def check_video_budget(loaded: Any, pictures: list[Any]) -> None:
    """The frames' placeholder runs against the model's context, before any frame is encoded."""
    from mmv.errors import MmvError

    config = loaded.model.config
    runs = sum(grid.runs for grid in loaded.tiling.grids(pictures))
    needed = runs * config.image_token_len
    if needed >= config.max_position_embeddings:
        raise MmvError(
            f"{len(pictures)} pictures take {needed} image tokens, over the model's context of "
            f"{config.max_position_embeddings}; pass fewer --frames",
            option="frames",
        )


def _write_stdout(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()
