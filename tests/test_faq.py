"""The landscape FAQ's code blocks are one session: they must run, in order, as the page shows them."""

import re
from pathlib import Path

import matplotlib

FAQ = Path(__file__).resolve().parents[1] / "book" / "faq.md"


def test_every_code_block_of_the_faq_runs_in_order(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"^```\{code-cell\} ipython3\n(.*?)^```$", FAQ.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 10
    session: dict = {"__name__": "faq"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"faq block {i + 1}", "exec"), session)
        except Exception as err:  # say which block broke
            raise AssertionError(f"block {i + 1} of book/faq.md fails: {err!r}\n{block}") from err
