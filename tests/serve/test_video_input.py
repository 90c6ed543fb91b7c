"""Video parts in `mmv serve`: a clip's sampled frames, laid out and answered as `mmv chat clip.mp4` answers them,
its history reused on the next turn, and every bad video a 400 naming it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import httpx2
import pytest
from PIL import Image

from mmv.serve.image_input import MediaPolicy
from mmv.serve.prompt import template_messages
from mmv.serve.protocol import ApiError, Message, VideoPart
from mmv.serve.video_input import RecentVideos, load_video
from mmv.vision_input.video import Frame
from tests.conftest import load_p32_for_chat
from tests.serve.conftest import API_KEY, MODEL_ARGS, data_uri, start_server, stream_text, synth_clip

pytest.importorskip("av")

QUESTION = "Which way does the shape move?"
FRAMES = 8  # the p32 fixture is a bare .pth: no run records a frame count, so the server samples 8


def video_part(data: bytes, mime: str = "video/mp4") -> dict:
    return {"type": "video_url", "video_url": {"url": data_uri(data, mime)}}


def chat_reply(clip_path, max_new_tokens: int, *options: str) -> dict:
    """`mmv --json chat clip.mp4 --temperature 0 --prompt QUESTION` on the server's model, in a subprocess."""
    command = [sys.executable, "-m", "mmv.cli.app", "--json", "chat", str(clip_path), *MODEL_ARGS, *options]
    command += ["--temperature", "0", "--prompt", QUESTION, "--max-new-tokens", str(max_new_tokens)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_clip_gets_the_reply_mmv_chat_gives_it_plain_and_streamed(server, tmp_path):
    clip = synth_clip()
    (tmp_path / "clip.mp4").write_bytes(clip)
    expected = chat_reply(tmp_path / "clip.mp4", 16)
    assert expected["frames"] == FRAMES

    content = [video_part(clip), {"type": "text", "text": QUESTION}]
    messages = [{"role": "user", "content": content}]
    client = server.client()
    reply = client.chat.completions.create(model="model", messages=messages, temperature=0, max_tokens=16)
    assert reply.choices[0].message.content == expected["reply"]
    assert reply.usage.completion_tokens == expected["new_tokens"]
    assert reply.usage.prompt_tokens > FRAMES * 64  # every frame's placeholder run is counted

    stream = client.chat.completions.create(
        model="model",
        messages=messages,
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, chunks = stream_text(stream)
    assert text == expected["reply"]
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # it really streamed
    assert chunks[-1].usage.prompt_tokens == reply.usage.prompt_tokens


def test_a_resent_conversation_reuses_the_clips_keys_and_values_and_replies_as_mmv_chat(server):
    from mmv.chat import ChatSession
    from mmv.sampling import SamplingConfig
    from mmv.vision_input.video import sample_frames, video_text

    clip = synth_clip()
    frames = sample_frames(clip, FRAMES)
    session = ChatSession(load_p32_for_chat(), SamplingConfig(max_new_tokens=12, temperature=0))
    for frame in frames:
        session.attach(f"clip@{frame.seconds:.1f}s", frame.image)
    expected = [session.ask(video_text(frames) + QUESTION).text, session.ask("And what colour is it?").text]

    client = server.client()
    messages = [{"role": "user", "content": [video_part(clip), {"type": "text", "text": QUESTION}]}]
    one = client.chat.completions.create(model="model", messages=messages, temperature=0, max_tokens=12)
    messages += [
        {"role": "assistant", "content": one.choices[0].message.content},
        {"role": "user", "content": "And what colour is it?"},
    ]
    two = client.chat.completions.create(model="model", messages=messages, temperature=0, max_tokens=12)
    assert [one.choices[0].message.content, two.choices[0].message.content] == expected
    # the first turn, its eight frames included, is not prefilled again
    assert two.usage.prompt_tokens_details.cached_tokens > one.usage.prompt_tokens


def zero_frame_avi() -> bytes:
    """An AVI file with a video stream and not one frame."""
    import av

    buffer = io.BytesIO()
    container = av.open(buffer, mode="w", format="avi")
    stream = container.add_stream("mpeg4", rate=4)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    return buffer.getvalue()


def post(server, body: dict) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    response = httpx2.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=120)
    return response.status_code, response.json()["error"]


def asking(*parts: dict, before: list | None = None) -> dict:
    return {
        "model": "model",
        "messages": [*(before or []), {"role": "user", "content": [*parts, {"type": "text", "text": "hi"}]}],
    }


@pytest.mark.parametrize(
    ("case", "code", "says"),
    [
        ("random-bytes", "invalid_video", "video 1 is not a video file"),
        ("truncated", "invalid_video", "video 1 "),
        ("no-frames", "invalid_video", "video 1 has no frames"),
        ("over-video-limit", "video_too_large", "video 1 is over this server's 1 MB video limit"),
        ("url-without-flag", "video_url_not_allowed", "--allow-image-urls"),
        ("local-path", None, "local paths are never read"),
        ("second-of-two", "invalid_video", "video 2 is not a video file"),
    ],
)
def test_bad_videos_are_a_400_naming_the_problem(server, case, code, says):
    clip = synth_clip()
    part = {
        "random-bytes": lambda: video_part(os.urandom(4096)),
        "truncated": lambda: video_part(clip[: len(clip) // 3]),
        "no-frames": lambda: video_part(zero_frame_avi(), "video/x-msvideo"),
        "over-video-limit": lambda: video_part(os.urandom(1_200_000)),
        "url-without-flag": lambda: {"type": "video_url", "video_url": {"url": "http://127.0.0.1:9/clip.mp4"}},
        "local-path": lambda: {"type": "video_url", "video_url": {"url": "/tmp/clip.mp4"}},
        "second-of-two": lambda: video_part(b"not a video"),
    }[case]()
    parts = [video_part(clip), part] if case == "second-of-two" else [part]
    status, error = post(server, asking(*parts))
    assert status == 400 and says in error["message"], error
    assert error["type"] == "invalid_request_error" and error["code"] == code
    if case == "truncated":
        assert "not a video file" in error["message"] or "cannot be decoded" in error["message"]


def test_a_video_outside_a_user_message_is_refused(server):
    assistant = {"role": "assistant", "content": [video_part(synth_clip())]}
    status, error = post(server, asking(before=[{"role": "user", "content": "hi"}, assistant]))
    assert status == 400 and error["param"] == "messages[1].content[0]"
    assert "only user messages may hold videos" in error["message"]


def test_frames_over_the_context_are_refused_before_any_is_encoded(server):
    """64 clips of 8 frames: 512 runs of 64 placeholders fill the fixture's 32768 positions on their own."""
    clip = synth_clip()
    status, error = post(server, asking(*[video_part(clip)] * 64))
    assert status == 400 and error["code"] == "context_length_exceeded"
    assert "512 video frames take 32768 of them; this server samples 8 per video" in error["message"]
    assert httpx2.get(f"{server.url}/health").json()["status"] == "ok"


def test_without_pyav_a_video_is_a_400_saying_how_to_install_it(monkeypatch):
    uri = data_uri(synth_clip(), "video/mp4")
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError, as where the extra is missing
    with pytest.raises(ApiError) as caught:
        load_video(uri, MediaPolicy(max_bytes=2**20), FRAMES, 1)
    assert caught.value.status == 400 and caught.value.code == "video_unsupported"
    assert "video 1" in caught.value.message and "pip install 'mmv[video]'" in caught.value.message


def test_each_frame_is_an_image_named_by_the_clip_and_its_place(tmp_path):
    clip = synth_clip()
    policy = MediaPolicy(max_bytes=2**20)
    video = load_video(data_uri(clip, "video/mp4"), policy, 4, 1)
    again = load_video(data_uri(clip, "video/mp4"), policy, 4, 2)
    assert len(video.frames) == len(video.pictures) == 4
    assert [p.digest for p in video.pictures] == [p.digest for p in again.pictures]  # a resent clip is recognised
    assert len({p.digest for p in video.pictures}) == 4
    other = load_video(data_uri(clip, "video/mp4"), policy, 2, 1)
    assert not {p.digest for p in other.pictures} & {p.digest for p in video.pictures}  # other frames, other names
    assert [p.image.tobytes() for p in video.pictures] == [f.image.tobytes() for f in video.frames]


def test_a_resent_clip_is_not_decoded_again_and_old_ones_make_room(tmp_path):
    clip, other = synth_clip(), synth_clip(seed=4)
    policy = MediaPolicy(max_bytes=2**20)
    recent = RecentVideos()
    first = load_video(data_uri(clip, "video/mp4"), policy, 4, 1, recent)
    again = load_video(data_uri(clip, "video/mp4"), policy, 4, 1, recent)
    assert recent.decoded == 1 and [f.image for f in again.frames] == [f.image for f in first.frames]
    load_video(data_uri(clip, "video/mp4"), policy, 2, 1, recent)  # other frames of the same clip
    assert recent.decoded == 2
    frame = first.frames[0].image
    small = RecentVideos(max_bytes=4 * frame.width * frame.height * 3)  # room for one clip's four frames
    load_video(data_uri(clip, "video/mp4"), policy, 4, 1, small)
    load_video(data_uri(other, "video/mp4"), policy, 4, 1, small)
    load_video(data_uri(clip, "video/mp4"), policy, 4, 1, small)
    assert small.decoded == 3  # the first clip made room for the second, so it was decoded again
    with pytest.raises(ApiError) as caught:  # a bad video is refused, and nothing is kept for it
        load_video(data_uri(b"not a video", "video/mp4"), policy, 4, 3, recent)
    assert caught.value.code == "invalid_video" and "3" in caught.value.message and recent.decoded == 2


@pytest.mark.parametrize("with_image", [False, True])
def test_a_clip_is_laid_out_as_mmv_chat_lays_it_out(tmp_path, with_image):
    """The user turn's text, to the character, that `mmv chat [photo.jpg] clip.mp4 --prompt Q` asks."""
    from mmv.cli.chat import open_inputs, place_video_prompt
    from mmv.serve.protocol import parse_chat_request
    from mmv.vision_input.video import sample_frames
    from tests.serve.conftest import PHOTOS, image_part, image_uri

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(synth_clip())
    paths = [PHOTOS[0], clip] if with_image else [clip]
    _, lead = open_inputs(paths, FRAMES)
    parts = [video_part(clip.read_bytes()), {"type": "text", "text": QUESTION}]
    parts = [image_part(image_uri(PHOTOS[0])), *parts] if with_image else parts
    body = {"messages": [{"role": "user", "content": parts}]}
    request = parse_chat_request(body, model_names=("m",), max_tokens_limit=16)
    served = template_messages(request.messages, [sample_frames(clip, FRAMES)])[0]["content"]
    assert served == place_video_prompt(lead, QUESTION)


def frames(*seconds: float) -> list[Frame]:
    return [Frame(Image.new("RGB", (8, 8)), s) for s in seconds]


def test_one_video_is_its_frames_where_it_stood_and_several_in_a_message_are_numbered():
    one = Message("user", [VideoPart("a"), "Q"])
    assert template_messages([one], [frames(0.1, 0.6)])[0]["content"] == (
        "Frame 1 at 0.1 s: <image>\nFrame 2 at 0.6 s: <image>\nQ"
    )
    two = Message("user", ["Compare", VideoPart("b"), VideoPart("c")])
    rendered = template_messages([one, Message("assistant", ["ok"]), two], [frames(0.1), frames(0.2), frames(0.3)])
    # the first turn renders as it did alone: its keys/values stay reusable when a later turn brings more videos
    assert rendered[0]["content"] == "Frame 1 at 0.1 s: <image>\nQ"
    assert rendered[2]["content"] == (
        "Compare\nVideo 2:\nFrame 1 at 0.2 s: <image>\nVideo 3:\nFrame 1 at 0.3 s: <image>"
    )


def test_serve_frames_sets_the_frames_per_video_as_chat_frames_does(server, tmp_path):
    clip = synth_clip()
    (tmp_path / "clip.mp4").write_bytes(clip)
    expected = chat_reply(tmp_path / "clip.mp4", 8, "--frames", "2")
    assert expected["frames"] == 2
    messages = [{"role": "user", "content": [video_part(clip), {"type": "text", "text": QUESTION}]}]
    eight = server.client().chat.completions.create(model="model", messages=messages, temperature=0, max_tokens=8)
    two_frames = start_server("--frames", "2")
    try:
        reply = two_frames.client().chat.completions.create(
            model="model", messages=messages, temperature=0, max_tokens=8
        )
    finally:
        assert two_frames.stop() == 0
    assert reply.choices[0].message.content == expected["reply"]
    assert eight.usage.prompt_tokens - reply.usage.prompt_tokens > 6 * 64  # six frames' runs fewer


def test_serve_takes_frames_from_the_command_line():
    """`mmv serve --frames N` is checked as `mmv chat --frames` is, naming the flag."""
    command = [sys.executable, "-m", "mmv.cli.app", "serve", *MODEL_ARGS, "--port", "0", "--frames", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--frames" in result.stderr and "between 1 and 64" in result.stderr
    assert "Traceback" not in result.stderr
