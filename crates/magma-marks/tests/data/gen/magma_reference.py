"""Runs the reference Magma UI SoM code on the committed screenshots and on random layouts, and records
what it does (font size, label sizes, every label's position and rectangle, the marked image).

`magma_som.py` must be the reference's `agents/ui_agent/util/som.py` (microsoft/Magma, commit a000fd0)
with two module globals exposed so the font can be swapped: `font_path` (the bundled Liberation Sans)
and `layout_engine` (passed to every `ImageFont.truetype` call), and with `plot_boxes_with_marks`
returning the chosen corner names alongside the image. It is not committed (it is not ours to copy).

    python magma_reference.py /path/to/magma_som.py ../../../assets/fonts/LiberationSans-Regular.ttf ..
"""
import importlib.util
import json
import os
import random
import sys

from PIL import Image, ImageFont

spec = importlib.util.spec_from_file_location("magma_som", sys.argv[1])
som = importlib.util.module_from_spec(spec)
spec.loader.exec_module(som)
som.font_path = sys.argv[2]
out_dir = sys.argv[3]


def run(image, boxes_yxhw, layout):
    som.layout_engine = layout
    helper = som.MarkHelper()
    marked, placements = som.plot_boxes_with_marks(image, boxes_yxhw, helper, edgecolor=(255, 0, 0),
                                                   normalized_to_pixel=False)
    return marked, {"font_size": helper.fontsize, "placements": placements}


for page in ["login", "search", "settings"]:
    image = Image.open(os.path.join(out_dir, page + ".png")).convert("RGB")
    W, H = image.size
    parsed = json.load(open(os.path.join(out_dir, page + ".boxes.json")))
    # The same f64 arithmetic as magma-marks' OmniParser reader: y1·H, x1·W, (y2−y1)·H, (x2−x1)·W.
    boxes = [(b["bbox"][1] * H, b["bbox"][0] * W, (b["bbox"][3] - b["bbox"][1]) * H,
              (b["bbox"][2] - b["bbox"][0]) * W) for b in parsed]
    result = {}
    for name, layout in (("raqm", ImageFont.Layout.RAQM), ("basic", ImageFont.Layout.BASIC)):
        marked, result[name] = run(image.copy(), boxes, layout)
        if name == "raqm":
            marked.save(os.path.join(out_dir, page + ".reference.png"), optimize=True)
    json.dump(result, open(os.path.join(out_dir, page + ".reference.json"), "w"))

# Random layouts: integer and fractional boxes, duplicates, nesting, boxes on the image border.
rng = random.Random(5)
layouts = []
for case in range(40):
    W, H = rng.choice([(1280, 800), (1920, 1080), (640, 400), (300, 200), (8000, 600)])
    n = rng.randint(1, 60)
    boxes = []
    for _ in range(n):
        kind = rng.random()
        if boxes and kind < 0.1:
            boxes.append(rng.choice(boxes))  # exact duplicate
            continue
        w = rng.uniform(4, W / 3)
        h = rng.uniform(4, H / 4)
        x = rng.uniform(0, W - w)
        y = rng.uniform(0, H - h)
        if kind < 0.3:
            x, y, w, h = float(int(x)), float(int(y)), float(int(w)), float(int(h))
        if kind > 0.9:
            x = 0.0 if rng.random() < 0.5 else W - w
        boxes.append((y, x, h, w))
    _, placed = run(Image.new("RGB", (W, H)), boxes, ImageFont.Layout.RAQM)
    layouts.append({"width": W, "height": H, "boxes": boxes, **placed})
json.dump(layouts, open(os.path.join(out_dir, "reference_random.json"), "w"))
print("done")
