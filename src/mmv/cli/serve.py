"""`mmv serve`: an OpenAI-compatible chat API and a web chat page over one model."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from mmv.cli.common import MODEL_FLAGS, console, emit_json, handle_errors
from mmv.cli.model_options import ModelChoice, load_chosen_model, takes_model_options

EXTRA_HINT = "mmv serve needs the serve extra: pip install 'mmv[serve]'"
SHUTDOWN_GRACE_S = 3.0  # running requests get this long to finish after SIGTERM / Ctrl-C


@handle_errors(flags={**MODEL_FLAGS, "frames": "--frames N"})
@takes_model_options
def serve(
    model: str = typer.Option(
        ..., "--model", "-m", help="A .pth/.safetensors file, a transformers folder, a run directory or a cached name."
    ),
    *,
    choice: ModelChoice,  # --vision, --tokenizer, --device ... (takes_model_options)
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0 = any free port)."),
    api_key: str = typer.Option(None, help="Require `Authorization: Bearer KEY` on /v1/*."),
    max_batch: int = typer.Option(8, min=1, help="Requests decoded together; more wait for a free row."),
    max_new_tokens_limit: int = typer.Option(2048, min=1, help="The largest max_tokens a request may ask for."),
    max_image_mb: float = typer.Option(20.0, min=0.001, help="Largest image accepted, in MB."),
    max_video_mb: float = typer.Option(
        40.0, min=0.001, help="Largest video accepted, in MB (its base64 must also fit --max-body-mb)."
    ),
    max_body_mb: float = typer.Option(64.0, min=0.001, help="Largest request body accepted, in MB."),
    allow_image_urls: bool = typer.Option(
        False, "--allow-image-urls", help="Fetch http(s) image and video URLs (off: only data: URIs are read)."
    ),
    frames: int = typer.Option(
        None, metavar="N", help="Frames sampled evenly in time from each video [default: as the run trained, else 8]."
    ),
) -> None:
    """Serve a model over the OpenAI chat API (/v1/chat/completions) and a web chat page (/)."""
    from mmv.errors import MmvError

    try:
        from mmv.serve.app import ServeSettings
        from mmv.serve.engine import EngineSettings
        from mmv.serve.server import serve as run_server
    except ImportError as exc:
        if exc.name not in ("starlette", "uvicorn") and not str(exc.name).startswith(("starlette.", "uvicorn.")):
            raise
        raise MmvError(EXTRA_HINT) from None
    from mmv.device import check_device, check_dtype

    check_device(choice.device)
    check_dtype(choice.dtype)
    if not _is_loopback(host) and not api_key:
        console.print(
            f"[yellow]warning:[/] listening on {host} without --api-key: anyone who can reach this address can use "
            "the model"
        )
    loaded, threads = load_chosen_model(model, choice, frames=frames, need_vision=False, spinner=True)
    if loaded.processor is None:
        console.print("[yellow]note:[/] no vision encoder found (pass --vision DIR): requests with images are refused")
    settings = ServeSettings(
        model_name=served_name(model),
        model_aliases=(model,),
        api_key=api_key,
        max_new_tokens_limit=max_new_tokens_limit,
        max_image_mb=max_image_mb,
        max_video_mb=max_video_mb,
        max_body_mb=max_body_mb,
        allow_image_urls=allow_image_urls,
    )

    def ready(url: str) -> None:
        console.print(f"serving {settings.model_name}: chat page {url}/  API {url}/v1  (Ctrl-C stops)", soft_wrap=True)

    summary = run_server(
        loaded,
        settings,
        EngineSettings(max_batch=max_batch),
        host=host,
        port=port,
        grace_s=SHUTDOWN_GRACE_S,
        on_ready=ready,
    )
    console.print(f"stopped after {summary.requests} requests")
    emit_json({"model": settings.model_name, **vars(summary), "threads": threads})


def served_name(ref: str) -> str:
    """The id clients name: a cached name as it is, a file's stem, a folder's name."""
    path = Path(ref).expanduser()
    return path.stem if path.is_file() else (path.name or ref)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
