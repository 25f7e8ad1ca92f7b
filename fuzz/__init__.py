"""atheris fuzz targets, one `fuzz_*.py` per input dispatcher takes from outside.

Each target's per-input check is a plain `check(data: bytes) -> None`: scripts/fuzz runs it under
atheris, and tests/unit/test_fuzz_corpus.py replays the checked-in corpus through it without.
"""
