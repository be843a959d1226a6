"""Checks a built mdBook: every internal link and image of every page resolves to a file,
the results chapter has its charts, and no page shows a path of the machine that built it
(the repository's absolute path). Usage: check_book.py BUILD_DIR"""
import html.parser
import pathlib
import sys
import urllib.parse


class Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.refs.append((tag, v))


def main():
    build = pathlib.Path(sys.argv[1])
    pages = sorted(build.rglob("*.html"))
    if not pages:
        sys.exit(f"no pages in {build}")
    broken, images = [], 0
    machine = str(build.resolve().parent.parent)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if machine in text:
            broken.append(f"{page.relative_to(build)}: shows this machine's path {machine}")
        parser = Refs()
        parser.feed(text)
        for tag, ref in parser.refs:
            url = urllib.parse.urlparse(ref)
            if url.scheme or ref.startswith(("#", "//")):
                continue
            path = urllib.parse.unquote(url.path)
            if not path:
                continue
            target = (page.parent / path).resolve()
            if tag == "img":
                images += 1
            if not target.exists():
                broken.append(f"{page.relative_to(build)}: <{tag}> {ref}")
    report = build / "generated" / "results" / "report.html"
    charts = report.read_text(encoding="utf-8").count("<img") if report.exists() else 0
    print(f"check_book: {len(pages)} pages, {images} images, {len(broken)} broken references; results chapter has {charts} charts")
    for b in broken:
        print("  broken:", b)
    if broken or charts < 4:
        sys.exit(1)


main()
