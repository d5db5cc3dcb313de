"""`mpdit bench`'s mistakes, one line each before any case runs."""
import pytest

from helpers.cli import run_cli


@pytest.mark.parametrize("args, message", [
    (["--preset", "huge"], "mpdit bench: error: argument --preset: invalid choice: 'huge'"),
    (["--preset", "tiny", "--models", "MPDiT-Q"], "mpdit bench: error: models=MPDiT-Q: expected some of MPDiT-S/8px"),
    (["--preset", "tiny", "--providers", "cudnn"], "mpdit bench: error: providers=cudnn: expected some of torch"),
    (["--preset", "tiny", "--sections", "fid"], "mpdit bench: error: sections=fid: expected some of flops"),
])
def test_bad_arguments_are_one_line(args, message):
    assert run_cli("bench", *args, "--no-progress").error.startswith(message)
