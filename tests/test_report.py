"""The shared views of bench and eval results: token axis labels and stable colours per method."""

import matplotlib.figure

from sliminfer.report import line_plot, token_count_label


def test_token_counts_are_labelled_in_k_of_1024():
    labels = [token_count_label(n) for n in (1024, 2048, 131072, 1536, 1000, 256)]
    assert labels == ["1k", "2k", "128k", "1.5k", "1000", "256"]


def test_a_method_keeps_its_colour_across_plots_and_x_is_in_tokens(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, *a, **k: figures.append(figure))
    palette = ["hf", "full", "slim"]
    both = {"hf": ([1024, 8192], [1.0, 9.0]), "slim": ([1024, 8192], [0.5, 3.0])}
    assert line_plot(str(tmp_path / "a.png"), both, title="t", xlabel="x", ylabel="y", token_axis=True, palette=palette)
    assert line_plot(str(tmp_path / "b.png"), {"slim": both["slim"]}, title="t", xlabel="x", ylabel="y", palette=palette)
    colours = [{line.get_label(): line.get_color() for line in figure.axes[0].lines} for figure in figures]
    assert colours[0]["slim"] == colours[1]["slim"] != colours[0]["hf"]
    assert [tick.get_text() for tick in figures[0].axes[0].get_xticklabels()] == ["1k", "8k"]


def test_a_missing_matplotlib_is_reported(tmp_path, monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert not line_plot(str(tmp_path / "ttft.png"), {"a": ([1], [1])}, title="t", xlabel="x", ylabel="y")
    assert "ttft.png not written" in caplog.text and ".[plot]" in caplog.text

