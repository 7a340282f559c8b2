"""The README's demo block is a real ``curvwidgets demo`` summary, and the CLI prints no warning of torch's own.

The demo itself is not run here: ``make test`` runs it once and pipes its
output through ``scripts/update_readme_demo.py --check-output``.
"""

import datetime
import importlib.util
import io
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from curvwidgets._machine import cpu_model
from curvwidgets.cli import _torch_internal_warnings_ignored
from curvwidgets.demo import DemoSummary, format_demo_summary, parse_demo_summary

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    """``scripts/update_readme_demo.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("update_readme_demo", ROOT / "scripts" / "update_readme_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _load_script()

#: numbers in every notation the format prints: plain, negative, exponents both ways, a negative zero
KNOWN = DemoSummary(
    test_accuracy=0.93125,
    spectra={"hessian": {"lambda_max": 18.5514, "lambda_min": -0.60327, "negative_mass": 0.99912,
                         "negative_mass_se": 0.0123, "negative_mass_beyond_zero": 0.0004, "trace_estimate": 75.514,
                         "trace_estimate_se": 3.21},
             "ggn": {"lambda_max": 1.70727e6, "lambda_min": 1.2653e-06, "negative_mass": -0.0,
                     "negative_mass_se": 0.0, "negative_mass_beyond_zero": 0.0, "trace_estimate": 77.69,
                     "trace_estimate_se": 2.5e-05}},
    vectors=4,
    curvature_at_zero=17.8613,
    seconds={"training": 6.4, "spectra": 46.4, "landscape": 11.4})
GOOD = format_demo_summary(KNOWN)
GOOD_LINES = GOOD.split("\n")
PROVENANCE = "Printed on 2000-01-01; CPU: a test CPU."


def _replace_line(text: str, number: int, line: str) -> str:
    """``text`` with its line ``number`` (from 1) replaced by ``line``."""
    lines = text.split("\n")
    lines[number - 1] = line
    return "\n".join(lines)


def demo_output(summary_text: str) -> str:
    """What ``make demo`` prints on stdout around a summary."""
    return ("make[1]: Entering directory '/work'\n"
            "trained MLP for 10 epochs -> results/run/checkpoint-00010.pt\n"
            "spectra -> results/spectra\nlandscapes -> results/losslandscape-00010.npz\n\n"
            f"{summary_text}\nresults and figures in results/\nmake[1]: Leaving directory '/work'\n")


# ---- the format ----------------------------------------------------------------------------------------------

def test_the_parser_reads_back_what_the_formatter_prints():
    parsed = parse_demo_summary(GOOD)
    assert parsed.test_accuracy == pytest.approx(KNOWN.test_accuracy, abs=5e-4)
    assert parsed.spectra.keys() == KNOWN.spectra.keys()
    for matrix, numbers in KNOWN.spectra.items():
        for key, value in numbers.items():
            digits = 5e-2 if key.endswith("_se") else 5e-4  # errors to two significant digits, the rest to four
            assert parsed.spectra[matrix][key] == pytest.approx(value, rel=digits, abs=5e-4), (matrix, key)
    assert parsed.curvature_at_zero == pytest.approx(KNOWN.curvature_at_zero, rel=5e-4)
    assert parsed.vectors == 4
    assert parsed.seconds == {"training": 6.0, "spectra": 46.0, "landscape": 11.0}
    # the total, 64 s, is the rounded sum of the unrounded stages, one more than the printed stages' sum
    assert GOOD.endswith("total 64 s")
    assert format_demo_summary(parsed).split("\n")[:-1] == GOOD_LINES[:-1]


@pytest.mark.parametrize("text, line", [
    (_replace_line(GOOD, 1, "test accuracy: 0.931"), "line 1"),
    (_replace_line(GOOD, 2, GOOD_LINES[1].replace("lambda_1", "lambda_max")), "line 2"),
    (_replace_line(GOOD, 3, GOOD_LINES[2].replace(" 18.55", "18.55 ")), "line 3"),  # a column out of place
    (_replace_line(GOOD, 3, GOOD_LINES[2].replace("18.55", "18.551")), "line 3"),  # a digit too many
    (_replace_line(GOOD, 3, GOOD_LINES[2].replace("± 3.2", "± 3.21")), "line 3"),  # an error's digit too many
    (_replace_line(GOOD, 3, GOOD_LINES[2].replace(" ± 3.2", "")), "line 3 must hold 7 numbers"),
    (_replace_line(GOOD, 5, "± one standard error over four Lanczos start vectors"), "line 5"),
    (_replace_line(GOOD, 6, GOOD_LINES[5].replace("(lambda_1 = 18.55)", "(lambda_1 = 19.55)")), "line 6"),
    (_replace_line(GOOD, 7, "time: training 6 s, spectra 46 s, landscape 11 s, total 75 s"), "line 7"),
    (_replace_line(GOOD, 7, "time: training 6 s, spectra 46 s, landscape 11 s"), "line 7"),
    (GOOD.replace(GOOD_LINES[3], GOOD_LINES[2]), "names a matrix twice"),
    ("\n".join(GOOD_LINES[:2] + GOOD_LINES[3:]), "no hessian row"),
    ("\n".join(GOOD_LINES[:3]), "at least 6 lines"),
])
def test_the_parser_names_the_line_out_of_format(text, line):
    with pytest.raises(ValueError, match=rf"^text: .*{re.escape(line)}"):
        parse_demo_summary(text)


def test_the_summary_is_found_in_the_demo_output():
    assert script.extract_summary(demo_output(GOOD)) == GOOD
    with pytest.raises(ValueError, match="^output: expected one demo summary .* found 0"):
        script.extract_summary("trained MLP\nresults and figures in results/\n")
    with pytest.raises(ValueError, match="^output: expected one demo summary .* found 2"):
        script.extract_summary(demo_output(GOOD) + demo_output(GOOD))
    with pytest.raises(ValueError, match="^output: .* no 'time:' line"):
        script.extract_summary("\n".join(GOOD_LINES[:-1]))


@pytest.mark.parametrize("output, status", [(demo_output(GOOD), 0),
                                            (demo_output(_replace_line(GOOD, 3, GOOD_LINES[2] + " ")), 1)])
def test_check_output_echoes_the_demo_and_fails_on_a_summary_out_of_format(monkeypatch, capsys, output, status):
    monkeypatch.setattr(sys, "stdin", io.StringIO(output))
    assert script.main(["--check-output"]) == status
    out, err = capsys.readouterr()
    assert out.startswith(output)
    if status == 0:
        assert err == ""
    else:
        assert err.startswith("update_readme_demo: error: text: line 3 ") and err.count("\n") == 1


# ---- the README ----------------------------------------------------------------------------------------------

README = (ROOT / "README.md").read_text()


def test_the_readme_block_is_a_consistent_demo_summary():
    summary = script.check_readme(README)
    numbers = [summary.test_accuracy, summary.curvature_at_zero, *summary.seconds.values(),
               *(value for row in summary.spectra.values() for value in row.values())]
    assert all(math.isfinite(value) for value in numbers)
    assert summary.spectra.keys() == {"hessian", "ggn"}
    assert summary.seconds.keys() == {"training", "spectra", "landscape"}
    assert summary.vectors > 1  # the printed figures carry error bars
    assert 0.5 < summary.test_accuracy <= 1  # ten digits: a trained network, far above chance
    hessian, ggn = summary.spectra["hessian"], summary.spectra["ggn"]
    for row in (hessian, ggn):
        assert 0 <= row["negative_mass_beyond_zero"] <= row["negative_mass"] <= 1
        assert row["lambda_min"] <= row["lambda_max"] and row["trace_estimate"] > 0
        assert 0 <= row["trace_estimate_se"] < row["trace_estimate"] and 0 <= row["negative_mass_se"] <= 1
    assert ggn["lambda_min"] >= -1e-3 * ggn["lambda_max"]  # positive semi-definite, up to rounding
    assert ggn["negative_mass_beyond_zero"] == 0
    # the second difference of the loss along the top eigenvector is about its eigenvalue
    assert 0.5 * hessian["lambda_max"] < summary.curvature_at_zero < 1.5 * hessian["lambda_max"]


def test_the_readme_block_says_where_and_when_it_was_printed():
    _, provenance = script.read_block(README)
    match = re.match(r"Printed on (\d{4}-\d{2}-\d{2}); CPU: (.+?) \(", provenance)
    assert match, provenance
    datetime.date.fromisoformat(match.group(1))
    assert "torch " in provenance and "Python " in provenance


def test_the_readme_quotes_no_count_of_tests():
    assert not re.search(r"\b\d+ (unit )?tests\b", README)


# ---- the rewrite ---------------------------------------------------------------------------------------------

def test_the_rewrite_is_idempotent_and_touches_only_the_block(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    fake = format_demo_summary(KNOWN)
    outputs = []

    def run_demo_cli(out: Path) -> str:
        outputs.append(out)
        return demo_output(fake)

    monkeypatch.setattr(script, "run_demo_cli", run_demo_cli)
    monkeypatch.setattr(script, "provenance_line", lambda date: PROVENANCE)
    assert script.update_readme(readme, tmp_path / "demo") == fake
    once = readme.read_text()
    assert script.update_readme(readme, None) == fake
    assert readme.read_text() == once
    assert outputs[0] == tmp_path / "demo" and not outputs[1].exists()  # None: a temporary folder, removed
    assert script.read_block(once) == (fake, PROVENANCE)
    begin, end = README.index(script.BEGIN), README.index(script.END) + len(script.END)
    assert once.startswith(README[:begin]) and once.endswith(README[end:])
    assert once[begin:len(once) - len(README) + end] == script.render_block(fake, PROVENANCE)


def test_edits_made_to_the_readme_while_the_demo_runs_are_kept(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    edit = "\nA paragraph another engineer added meanwhile.\n"

    def run_demo_cli(out: Path) -> str:
        readme.write_text(readme.read_text() + edit)
        return demo_output(GOOD)

    monkeypatch.setattr(script, "run_demo_cli", run_demo_cli)
    monkeypatch.setattr(script, "provenance_line", lambda date: PROVENANCE)
    script.update_readme(readme, None)
    assert readme.read_text().endswith(edit) and script.read_block(readme.read_text()) == (GOOD, PROVENANCE)


def test_a_readme_without_its_block_fails_before_the_demo_runs(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("# curvwidgets\n")
    monkeypatch.setattr(script, "run_demo_cli", lambda out: pytest.fail("the demo ran"))
    with pytest.raises(ValueError, match="^readme: the marker <!-- demo-summary:begin --> must appear once; found 0"):
        script.update_readme(readme, None)


@pytest.mark.parametrize("text, message", [
    (f"{script.BEGIN}\n{script.BEGIN}\n{script.END}", "begin --> must appear once; found 2"),
    (f"{script.END}\n{script.BEGIN}", "comes before"),
    (f"{script.BEGIN}\n```\n{GOOD}\n```\n{script.END}", "not a fenced summary followed by"),
])
def test_a_block_out_of_shape_is_an_error_naming_the_readme(text, message):
    with pytest.raises(ValueError, match=rf"^readme: .*{re.escape(message)}"):
        script.read_block(text)


def test_the_provenance_line_names_the_date_and_reads_back():
    line = script.provenance_line(datetime.date(2026, 1, 2))
    assert line.startswith(f"Printed on 2026-01-02; CPU: {cpu_model()} (")
    assert script.read_block(script.render_block(GOOD, line)) == (GOOD, line)
    with pytest.raises(ValueError, match="^provenance: one line"):
        script.render_block(GOOD, "made on a Tuesday")


# ---- torch's own warnings stay out of the command line's output ----------------------------------------------

JIT_SCRIPT = "`torch.jit.script` is deprecated. Please switch to `torch.compile` or `torch.export`."


def test_the_cli_ignores_only_torchs_jit_script_deprecation():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _torch_internal_warnings_ignored():
            warnings.warn_explicit(JIT_SCRIPT, FutureWarning, "_script.py", 1, module="torch.jit._script")
            warnings.warn_explicit(JIT_SCRIPT, FutureWarning, "mine.py", 2, module="mypackage")
            warnings.warn_explicit("`torch.jit.trace` is deprecated", FutureWarning, "_script.py", 3,
                                   module="torch.jit._script")
            warnings.warn_explicit(JIT_SCRIPT, DeprecationWarning, "_script.py", 4, module="torch.jit._script")
        warnings.warn_explicit(JIT_SCRIPT, FutureWarning, "_script.py", 5, module="torch.jit._script")
    assert [warning.lineno for warning in caught] == [2, 3, 4, 5]


def test_a_forward_mode_verb_prints_no_future_warning(tmp_path):
    """train then spectrum in a fresh interpreter: the first forward-mode product is where torch warns."""
    run, spectrum = str(tmp_path / "run"), str(tmp_path / "spectrum")
    code = (
        "import sys\n"
        "from curvwidgets.cli import main\n"
        f"assert main(['train', '--model', 'MLP', '--data', 'digits', '--epochs', '1', '--batch-size', '256', "
        f"'--out', {run!r}, '--device', 'cpu']) == 0\n"
        f"assert main(['spectrum', '--checkpoint', {run!r}, '--out', {spectrum!r}, '--steps', '2', "
        "'--samples', '64', '--device', 'cpu']) == 0\n"
        "print('FORWARD MODE', 'torch._decomp.decompositions_for_jvp' in sys.modules)\n"
    )
    as_a_user = {name: value for name, value in os.environ.items() if name != "PYTHONWARNINGS"}
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env=as_a_user)
    assert finished.returncode == 0, finished.stderr
    assert "FORWARD MODE True" in finished.stdout  # the path that warns was taken
    assert "Warning" not in finished.stderr, finished.stderr
