"""Renders the three pages in headless Chromium and records the boxes of their elements.

For every page: one run takes a 1280×800 screenshot, a second run with the same window dumps the DOM
after a small script has written `getBoundingClientRect()` of interactive and text elements into it.
Boxes are saved in OmniParser's parsed-content format (bbox as ratios) next to the PNG.

    python render_pages.py ..        # writes ../<page>.png and ../<page>.boxes.json
"""
import json
import os
import re
import subprocess
import sys
import tempfile

from PIL import Image

W, H = 1280, 800
PAGES = ["login", "search", "settings"]
COLLECT = """
<script>
window.addEventListener('load', () => {
  const interactive = 'a, button, input, select, textarea, [role=switch], [role=button], label';
  const text = 'h1, h2, .sub, .stats, .url, small, .logo, .brand, b';
  const out = [];
  for (const el of document.querySelectorAll(interactive + ', ' + text)) {
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1 || r.bottom <= 0 || r.right <= 0 || r.top >= %H% || r.left >= %W%) continue;
    const isInteractive = el.matches(interactive);
    const content = (el.value || el.getAttribute('aria-label') || el.placeholder || el.innerText || '').trim();
    out.push({type: isInteractive ? el.tagName.toLowerCase() : 'text',
              bbox: [r.left / %W%, r.top / %H%, r.right / %W%, r.bottom / %H%],
              interactivity: isInteractive, content: content || null, source: 'dom'});
  }
  const pre = document.createElement('pre');
  pre.id = 'som-boxes'; pre.style.display = 'none';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""".replace("%W%", str(W)).replace("%H%", str(H))


def chromium(args):
    profile = tempfile.mkdtemp()
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--hide-scrollbars",
            "--force-device-scale-factor=1", f"--user-data-dir={profile}", f"--window-size={W},{H}"]
    return subprocess.run(base + args, check=True, capture_output=True, text=True).stdout


def main(out_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    for page in PAGES:
        html = open(os.path.join(here, page + ".html")).read().replace("</body>", COLLECT + "</body>")
        with tempfile.NamedTemporaryFile("w", suffix=".html", delete=False) as f:
            f.write(html)
        url = "file://" + f.name
        png = os.path.join(out_dir, page + ".png")
        chromium([f"--screenshot={png}", url])
        # Palette PNG keeps the committed screenshots small; the marks are drawn on its RGB expansion.
        Image.open(png).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
        dom = chromium(["--dump-dom", url])
        boxes = json.loads(re.search(r'<pre id="som-boxes"[^>]*>(.*?)</pre>', dom, re.S).group(1)
                           .replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
        with open(os.path.join(out_dir, page + ".boxes.json"), "w") as f:
            json.dump(boxes, f, indent=1)
        print(page, len(boxes), "boxes")


if __name__ == "__main__":
    main(sys.argv[1])
