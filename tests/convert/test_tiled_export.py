"""A tiled model through `mmv convert --to transformers`: the folder records its tiles, and the model card's recipe
(the tiling code shipped in the modeling file) gives the logits mmv gives."""

from __future__ import annotations

import re
import sys

import torch
from PIL import Image

from mmv.config import VLMConfig
from mmv.convert import convert
from mmv.layout import read_json_object
from tests.conftest import IMAGES_DIR, REFERENCE, TOKENIZER_DIR

PHOTO = IMAGES_DIR / "image-04-yellow-car.jpg"


def test_the_card_recipe_runs_a_tiled_folder_as_mmv_does(tmp_path, monkeypatch):
    from transformers import AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer

    from mmv.loading import load_model
    from mmv.tokenizer import encode, render_chat

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder = tmp_path / "tiled"
    convert(
        REFERENCE / "p32" / "model.pth", "transformers", folder, tokenizer=TOKENIZER_DIR, base=VLMConfig(image_tiles=4)
    )
    assert read_json_object(folder / "config.json")["image_tiles"] == 4
    card = (folder / "README.md").read_text()
    assert "up to 4 tiles" in card

    # mmv: the folder loads back with its tiles
    loaded = load_model(folder, device="cpu", dtype="float32")
    assert loaded.model.config.image_tiles == 4
    image = Image.open(PHOTO).convert("RGB")
    messages = [{"role": "user", "content": "<image>\nDescribe the image."}]
    grids = loaded.tiling.grids([image])
    ids = torch.tensor([encode(loaded.tokenizer, render_chat(loaded.tokenizer, messages, grids=grids))])
    pixels = loaded.processor(loaded.tiling.views(image))
    with torch.no_grad():
        expected = loaded.model(ids, pixel_inputs=pixels).logits

    # transformers, following the card
    model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    processor = AutoImageProcessor.from_pretrained(str(folder), subfolder="vision")
    recipe = re.search(r"This model was trained on images cut.*?```python\n(.*?)```", card, re.S).group(1)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    scope = {"model": model, "tokenizer": tokenizer, "processor": processor, "text": text, "Image": Image}
    exec(recipe.replace("photo.jpg", str(PHOTO)), scope)  # the card's own lines, run as a user would
    assert torch.equal(scope["ids"], ids)
    assert scope["pixels"]["pixel_values"].shape[0] == 5
    assert "mmv" not in sys.modules[type(model).__module__].__file__
    with torch.no_grad():
        got = model(scope["ids"], **scope["pixels"]).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_targets_that_cannot_record_tiles_say_so(tmp_path):
    tiled = convert(REFERENCE / "p32" / "model.pth", "pth", tmp_path / "m.pth", base=VLMConfig(image_tiles=4))
    assert "--tiles 4" in tiled.note
    plain = convert(REFERENCE / "p32" / "model.pth", "pth", tmp_path / "plain.pth")
    assert plain.note is None
