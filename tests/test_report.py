"""`datagen report`: what it reads from a version, the page and PNGs it writes, how it compares two
versions, and that the page draws every chart in headless Chromium with the network off."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from datagen.methods.evol import OPERATIONS
from datagen.records import Record
from datagen.report import data as report_data
from datagen.report import load_version
from datagen.store.manifest import rejection_counts
from datagen.store.versions import DatasetStore

CHARTS = ("funnel", "lengths", "languages", "verbs", "judge", "rouge", "evolution")
VERBS = [("Write", "a short poem about {}."), ("Generate", "a list of facts about {}."),
         ("Write", "a story about {}."), ("Summarize", "the article about {}."),
         ("Create", "a quiz about {}."), ("Explain", "why {} matters to people.")]
TOPICS = ["the sea", "winter", "cats", "the moon", "trains", "coffee", "music", "rivers", "bread", "chess"]
FRENCH = ["Écris un court poème sur la mer et le vent qui souffle sur les vagues du soir.",
          "Donne-moi une liste de conseils pour bien dormir pendant les longues nuits d'hiver."]


def _records(n: int, evolved: bool = True) -> list[Record]:
    out = []
    for i in range(n):
        verb, rest = VERBS[i % len(VERBS)]
        topic = TOPICS[(i // len(VERBS)) % len(TOPICS)]
        instruction = f"{verb} {rest.format(topic)}"
        lang = "en" if i % 3 else ""
        output = " ".join(["The answer goes on for a while with words."] * (1 + i % 9))
        if i % 7 == 0:   # French, half with `lang` set and half left to detection
            instruction, lang = FRENCH[i % 2] + f" ({i})", ("fr" if i % 2 else "")
            output = "Voici une réponse assez longue, écrite en français pour le lecteur. " * (1 + i % 4)
        rec = Record(instruction=instruction, output=output, method="evol" if evolved else "self_instruct",
                     lang=lang, scores={"rouge_max": round(0.1 + 0.6 * (i % 10) / 10, 3)})
        if evolved:
            rec.round, rec.op = 1 + i % 3, OPERATIONS[i % len(OPERATIONS)]
            rec.scores["judge"] = {"score": 3 + i % 8, "rationale": "fine"}
        out.append(rec)
    return out


def _rejected(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        if i % 3 == 0:
            rows.append({"id": f"r{i}", "stage": "evol", "reason": "rule4_copied_prompt", "text": "x", "detail": {}})
        elif i % 3 == 1:
            rows.append({"id": f"r{i}", "stage": "rouge", "reason": "rouge_similar", "text": "y",
                         "detail": {"rouge_max": 0.72 + (i % 5) / 20}})
        else:
            rows.append({"id": f"r{i}", "stage": "judge", "reason": "judge_below_min_score", "text": "z",
                         "detail": {"score": 2}})
    return rows


def _publish(root: Path, name: str, records: list[Record], rejected: list[dict], evolved: bool = True) -> Path:
    manifest = {"recipe": "evol-instruct" if evolved else "self-instruct", "teacher": {"model": "stub-7b"},
                "counts": {"records": len(records)}, "rejected": rejection_counts(rejected),
                "usage": [{"role": "teacher", "prompt_tokens": 1000 * len(records), "completion_tokens": 500,
                           "cost_usd": 0.0125}],
                "filters": {"rouge_l": {"threshold": 0.7}}, "parent": None}
    if evolved:
        manifest["evol"] = {"per_operation": {op: {"attempts": 20, "passed": 12, "pass_rate": 0.6} for op in OPERATIONS},
                            "per_round": {str(r): {"attempts": 40, "passed": 25, "pass_rate": 0.625} for r in (1, 2, 3)},
                            "order": "cheap_first", "rounds": 3}
    store = DatasetStore(root, name)
    return store.publish(f"run-{len(store.versions())}", records, rejected, manifest, "# {{version}}\n")


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    out = tmp_path / "outputs"
    _publish(out, "demo", _records(60), _rejected(30))
    _publish(out, "demo", _records(90), _rejected(12))
    return out


def _cli(args: list[str], capsys, cwd: Path, monkeypatch) -> tuple[int, str]:
    from datagen.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["datagen", *args])
    with pytest.raises(SystemExit) as e:
        main()
    cap = capsys.readouterr()
    return e.value.code, cap.err + cap.out


def test_version_numbers_read_for_the_charts(store: Path):
    d = load_version("demo@v0001", store / "demo" / "v0001", sample=1000)
    assert d.records == 60 and d.rejected_total == 30
    assert list(d.funnel) == ["evol", "rouge", "judge"]            # pipeline order, as rejected.jsonl has it
    assert d.funnel["rouge"] == {"rouge_similar": 10}
    assert d.langs["fr"] == 9 and d.langs["en"] == 51              # fr: 4 set + 5 detected
    assert d.langs_detected == d.lang_missing == sum(1 for r in _records(60) if not r.lang)
    assert len(d.judge_scores) == 60 and set(d.judge_scores) <= set(range(3, 11))
    assert len(d.rouge_rejected) == 10 and min(d.rouge_rejected) > 0.7
    assert set(d.rounds) == {1, 2, 3} and set(d.ops) == set(OPERATIONS)
    assert d.instruction_tokens[1] > 3 and max(d.output_tokens) > 5 * min(d.output_tokens)
    top = {verb: dict(objs) for verb, _, objs in d.verbs.top()}
    # a real parse: root verb + its direct object, lemmatised; "Explain why ..." has no object
    assert top["write"]["poem"] > 0 and top["write"]["story"] > 0 and "list" in top["generate"]
    assert "explain" not in top
    # only English instructions are parsed: the French ones (by `lang` or detected) are counted apart
    assert d.verbs.other_lang == sum(1 for i in range(60) if i % 7 == 0) and d.verbs.parsed == 60 - d.verbs.other_lang
    assert not {v for v, _ in d.verbs.pairs} & {"vague", "longue", "écris", "donne"}


def test_sample_limits_the_costly_analyses(store: Path):
    d = load_version("demo@v0002", store / "demo" / "v0002", sample=10)
    assert d.verbs.parsed + d.verbs.other_lang == 10 and d.langs_detected == 10 < d.lang_missing
    again = load_version("demo@v0002", store / "demo" / "v0002", sample=10)
    assert again.verbs.pairs == d.verbs.pairs and again.langs == d.langs


def test_report_writes_page_and_pngs(store: Path, tmp_path: Path, capsys, monkeypatch):
    code, text = _cli(["report", "demo@v1", "--out", str(store)], capsys, tmp_path, monkeypatch)
    assert code == 0, text
    dest = tmp_path / "reports" / "demo-v0001"
    assert sorted(p.name for p in dest.iterdir()) == sorted(["report.html", *(f"{c}.png" for c in CHARTS)])
    html = (dest / "report.html").read_text()
    assert "<script" not in html and not re.search(r"""(?:src|href)=["'](?!#|data:)""", html)
    assert html.count('data-state="drawn"') == len(CHARTS)
    assert "<td>demo@v0001</td><td>write</td><td>16</td><td>poem (8), story (8)</td>" in html   # the rings as a table
    for c in CHARTS:
        assert (dest / f"{c}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rerunning replaces the earlier report in place
    code, _ = _cli(["report", "demo@v1", "--out", str(store)], capsys, tmp_path, monkeypatch)
    assert code == 0 and not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]


def test_compare_two_versions(store: Path, tmp_path: Path, capsys, monkeypatch):
    code, text = _cli(["report", "demo@v1", str(store / "demo" / "v0002"), "--dest", "cmp", "--out", str(store)],
                      capsys, tmp_path, monkeypatch)
    assert code == 0, text
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "demo@v0001 vs demo@v0002" in html
    row = html[html.index("<tr><th>records</th>"):]
    assert row.startswith("<tr><th>records</th><td>60</td><td>90</td><td class=\"up\">+30</td>")
    row = html[html.index("<tr><th>rejected</th>"):]
    assert row.startswith("<tr><th>rejected</th><td>30</td><td>12</td><td class=\"down\">-18</td>")
    # both versions appear in the overlaid charts' legends
    judge = html[html.index('id="chart-judge"'):html.index('id="chart-rouge"')]
    assert "demo@v0001 (n=60)" in judge and "demo@v0002 (n=90)" in judge


def test_charts_without_data_say_so(tmp_path: Path, capsys, monkeypatch):
    out = tmp_path / "outputs"
    plain = [Record(instruction=f"Name a colour number {i}.", output="Blue.") for i in range(5)]
    _publish(out, "plain", plain, [], evolved=False)
    monkeypatch.setattr(report_data, "_NLP", "the spaCy English model is not installed (test)")
    code, text = _cli(["report", "plain", "--out", str(out), "--dest", "r"], capsys, tmp_path, monkeypatch)
    assert code == 0, text
    html = (tmp_path / "r" / "report.html").read_text()
    states = {c: html.split(f'data-chart="{c}" data-state="')[1].split('"')[0] for c in CHARTS}
    assert states == {"funnel": "no-data", "lengths": "drawn", "languages": "drawn", "verbs": "no-data",
                      "judge": "no-data", "rouge": "no-data", "evolution": "no-data"}
    assert "model is not installed (test)" in html
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["languages.png", "lengths.png", "report.html"]


@pytest.mark.parametrize("args, message", [
    (["report", "demo@v7"], "no version 'v0007'"),
    (["report", "nosuch"], "no dataset 'nosuch'"),
    (["report", "demo", "demo@v9"], "no version 'v0009'"),
    (["report", "demo", "--dest", "afile"], "--dest: 'afile' is a file"),
    (["report", "demo", "--dest", "busy"], "--dest: 'busy' is not empty"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(store: Path, tmp_path: Path, capsys, monkeypatch,
                                                        args, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, text = _cli([*args, "--out", str(store)], capsys, tmp_path, monkeypatch)
    assert code == 2
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], text
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_broken_records_file_names_file_and_line(store: Path, tmp_path: Path, capsys, monkeypatch):
    vdir = tmp_path / "copy" / "v0001"
    shutil.copytree(store / "demo" / "v0001", vdir)
    with open(vdir / "records.jsonl", "a") as fh:
        fh.write("{not json\n")
    code, text = _cli(["report", str(vdir), "--dest", "r"], capsys, tmp_path, monkeypatch)
    assert code == 2 and f"records.jsonl:61: not valid JSON" in text and not (tmp_path / "r").exists()


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

# Per chart: is its SVG laid out with a real size, and how many visible marks (bars, wedges, lines)
# does it hold? Marks are the path/rect elements of matplotlib's figure with a non-empty box.
DRAWN_JS = """
return Array.from(document.querySelectorAll('section.chart')).map(s => {
  const svg = s.querySelector('.figure svg');
  if (!svg) return [s.dataset.chart, 0, 0, 0];
  const box = svg.getBoundingClientRect();
  const marks = Array.from(svg.querySelectorAll('path, rect, use')).filter(e => {
    const b = e.getBoundingClientRect(); return b.width > 0 || b.height > 0; }).length;
  return [s.dataset.chart, Math.round(box.width), Math.round(box.height), marks];
});
"""


@pytest.mark.slow          # ~12 s alone on 2 cores: chromium's start and two versions' charts
@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="Debian's chromium and chromium-driver are not installed (make test installs them)")
def test_report_draws_every_chart_in_headless_chromium_offline(store: Path, tmp_path: Path, capsys, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    code, text = _cli(["report", "demo@v1", "demo@v2", "--dest", "cmp", "--out", str(store)], capsys, tmp_path,
                      monkeypatch)
    assert code == 0, text
    page = tmp_path / "cmp" / "report.html"
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                # no network: every host resolves to nothing and any proxy use goes to a closed port
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9", "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    try:
        driver.get(page.as_uri())
        assert driver.title == "datagen report: demo@v0001 vs demo@v0002"
        drawn = {name: (w, h, marks) for name, w, h, marks in driver.execute_script(DRAWN_JS)}
        assert set(drawn) == set(CHARTS)
        for name, (w, h, marks) in drawn.items():
            assert w > 300 and h > 150 and marks >= 10, (name, w, h, marks)
        # nothing was fetched: the page is whole without a network
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(height + 40, 8000))
        driver.save_screenshot("/tmp/report-shot.png")
    finally:
        driver.quit()


def test_an_instruction_with_several_instances_is_one_instruction_in_the_figures(tmp_path: Path):
    """Self-Instruct publishes one record per instance: the verb figure and the ROUGE-L histogram
    count the instruction once, the length and language charts count every training row."""
    rows = []
    for k, (instruction, obj) in enumerate([("Write a poem about the sea.", "poem"), ("Write a story about a cat.", "story")]):
        for j in range(3 if k == 0 else 1):
            rows.append(Record(instruction=instruction, input=f"Input {j}", output=f"Output {j} for {obj}.",
                               method="self_instruct", lang="en", scores={"rouge_max": 0.3 + k / 10}))
    vdir = _publish(tmp_path / "outputs", "si", rows, [], evolved=False)
    d = load_version("si@v0001", vdir)
    assert d.records == 4 and len(d.instruction_tokens) == 4 and d.langs["en"] == 4
    assert d.verbs.pairs[("write", "poem")] == 1 and d.verbs.pairs[("write", "story")] == 1
    assert sorted(d.rouge_kept) == [0.3, 0.4]
