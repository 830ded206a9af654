"""Oracle for magma-marks' PIL text metrics: right/bottom of ImageDraw.textbbox((0, 0), text).

Run with Pillow (13.0.0 / FreeType 2.14.3 / libraqm were used) and the bundled font:
    python pil_text_sizes.py ../../../assets/fonts/LiberationSans-Regular.ttf > ../pil_text_sizes.json
"""
import json
import sys

from PIL import Image, ImageDraw, ImageFont, features

font_path = sys.argv[1]
texts = ["5", "55", "555", "0", "7", "12", "123", "1000", "9999", "47", "31", "11", "111", "1111", "110", "211", "1011"]
draw = ImageDraw.Draw(Image.new("RGB", (16, 16)))
out = {"pillow": Image.__version__, "freetype": features.version("freetype2"), "texts": texts, "sizes": {}}
for layout, engine in (("raqm", ImageFont.Layout.RAQM), ("basic", ImageFont.Layout.BASIC)):
    rows = []
    for size in range(1, 121):
        font = ImageFont.truetype(font_path, size, layout_engine=engine)
        rows.append([list(draw.textbbox((0, 0), t, font=font)[2:]) for t in texts])
    out["sizes"][layout] = rows
json.dump(out, sys.stdout, separators=(",", ":"))
