"""Tools for the corpus of real collector configs in tests/testdata/collector-configs."""
