"""Root pytest configuration: only what every test directory needs.

Hypothesis's pytest plugin imports ``hypothesis.internal.observability`` lazily, at the terminal
summary, where pytest's assertion rewriter parses it. After a browser or media test that import
failed on CPython 3.11.7 with "SystemError: AST constructor recursion depth mismatch" (CPython
gh-106905, fixed in later 3.11 releases), losing the run's summary and exit status. Importing it
here, at collection, parses it before any test has run.
"""

import hypothesis.internal.observability  # noqa: F401
