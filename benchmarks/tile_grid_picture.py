"""Draw docs/tile-grid.png: how `--tiles N` cuts a real photo (the README's picture).

Left, the global view every image gets (squeezed to the encoder's side); right, the image fitted into the anyres
grid with its tiles outlined and numbered in run order, the order their placeholder runs take in the prompt.
Usage: python benchmarks/tile_grid_picture.py [--image PATH] [--tiles 4] [--out docs/tile-grid.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from mmv.images import open_image
from mmv.vision_input.tiles import Tiling, cut_tiles

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "images" / "image-06-racecar-drift.jpg"
GAP, SCALE = 24, 0.75  # pixels between the panels; the tiles are drawn at this fraction of their size
LINE = (255, 200, 0)


def picture(image: Image.Image, tiles: int, side: int = 256) -> Image.Image:
    tiling = Tiling(tiles, side)
    grid = tiling.grid(image.size)
    cell = round(side * SCALE)
    global_view = image.resize((cell, cell), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (cell + GAP + grid.cols * (cell + 4), max(cell, grid.rows * (cell + 4)) + 40), "white")
    draw = ImageDraw.Draw(canvas)
    canvas.paste(global_view, (0, 40))
    draw.text((0, 8), f"run 1: global view ({side}x{side})", fill="black")
    draw.text((cell + GAP, 8), f"runs 2-{grid.runs}: {grid.rows}x{grid.cols} tiles of {side}", fill="black")
    for index, tile in enumerate(cut_tiles(image, grid, side)):
        row, col = divmod(index, grid.cols)
        x, y = cell + GAP + col * (cell + 4), 40 + row * (cell + 4)
        canvas.paste(tile.resize((cell, cell), Image.Resampling.BICUBIC), (x, y))
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline=LINE, width=3)
        draw.rectangle((x + 4, y + 4, x + 30, y + 22), fill=LINE)
        draw.text((x + 10, y + 7), str(index + 2), fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=PHOTO)
    parser.add_argument("--tiles", type=int, default=6)
    parser.add_argument("--crop", type=float, default=0.5, help="keep this fraction of the height (a wide photo)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "tile-grid.png")
    args = parser.parse_args()
    image = open_image(args.image)
    top = round(image.height * (1 - args.crop) / 2)
    wide = image.crop((0, top, image.width, image.height - top))
    picture(wide, args.tiles).save(args.out)
    print(f"{args.out}: a {wide.width}x{wide.height} crop of {args.image.name}, up to {args.tiles} tiles")


if __name__ == "__main__":
    main()
