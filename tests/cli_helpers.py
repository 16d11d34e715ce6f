"""Running the command line in-process, as the CLI tests do: `run_cli` returns the exit code,
`one_error_line` checks that a command fails with exactly one `error: ...` line and returns it."""

from gflownets.cli import main


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def one_error_line(capsys, *args) -> str:
    capsys.readouterr()
    code = run_cli(*args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err
