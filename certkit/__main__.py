"""``python -m certkit`` (what torchrun launches) runs the same CLI as the console script."""

from certkit.cli.entry import run

if __name__ == "__main__":
    run()
