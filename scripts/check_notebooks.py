"""Checks executed notebooks: every code cell ran, none failed, each says up front that
its data is synthetic, and the rich outputs a learner expects (HTML tables, inline
pictures and charts) are there. Usage: check_notebooks.py DIR"""
import json
import pathlib
import sys

# notebook -> (HTML outputs, SVG outputs) it must at least have
EXPECT = {
    "1-intro.ipynb": (1, 0),
    "2-data.ipynb": (3, 0),
    "3-features.ipynb": (0, 0),
    "4-head.ipynb": (1, 1),
    "5-evaluate.ipynb": (3, 1),
    "6-strategies.ipynb": (0, 1),
    "7-model.ipynb": (1, 0),
    "8-backbones.ipynb": (5, 0),
    "9-interpret.ipynb": (4, 2),
}


def texts(output):
    if "text" in output:
        t = output["text"]
        yield "".join(t) if isinstance(t, list) else t
    for mime, v in output.get("data", {}).items():
        if mime == "text/plain":
            yield "".join(v) if isinstance(v, list) else v


def seconds(cell):
    """How long the kernel took on a cell, from nbconvert's execution timestamps."""
    from datetime import datetime

    e = cell.get("metadata", {}).get("execution", {})
    try:
        a, b = (datetime.fromisoformat(e[k].replace("Z", "+00:00")) for k in ("iopub.execute_input", "shell.execute_reply"))
    except KeyError:
        return None
    return (b - a).total_seconds()


def check(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    problems = []
    html = svg = 0
    first_text = None
    for c in code:
        if c.get("execution_count") is None:
            problems.append(f"cell {c['id']} did not run")
        for o in c["outputs"]:
            if o["output_type"] == "error":
                problems.append(f"cell {c['id']}: {o.get('ename')}: {o.get('evalue')}")
            data = o.get("data", {})
            html += "text/html" in data
            svg += "image/svg+xml" in data
            if first_text is None:
                first_text = next(texts(o), None)
    if first_text is None or "SYNTHETIC" not in first_text:
        problems.append(f"first output does not say the data is synthetic: {first_text!r:.200}")
    want_html, want_svg = EXPECT[path.name]
    if html < want_html or svg < want_svg:
        problems.append(f"{html} HTML and {svg} SVG outputs; expected at least {want_html} and {want_svg}")
    times = [seconds(c) for c in code]
    timing = ""
    if times and all(t is not None for t in times):
        timing = f"; first code cell {times[0]:.1f} s, median {sorted(times)[len(times) // 2]:.1f} s, slowest {max(times):.1f} s"
    print(f"{path.name}: {len(code)} code cells, {html} HTML, {svg} SVG outputs{timing}" + ("" if not problems else " -- FAILED"))
    return problems


def main():
    out = pathlib.Path(sys.argv[1])
    failed = False
    for name in EXPECT:
        p = out / name
        problems = check(p) if p.exists() else [f"{p} missing"]
        for msg in problems:
            print(f"  {name}: {msg}")
            failed = True
    sys.exit(1 if failed else 0)


main()
