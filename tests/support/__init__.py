"""What the tests share: the repository's paths, and helper modules beside this one.

- ``fake_codemod``: a stand-in ``rewrite`` for CLI tests that must not depend on the analysis;
- ``fixture_harness`` / ``run_scripts``: scripts that run patched fixtures in one process
  (forwards recorded, the verifier on; or their output captured);
- ``reference_xgrad`` / ``reference_coverage``: the paper's formulas in plain tensor code, the
  independent reference the runtime is checked against;
- ``fx_models``: small models and training loops shared by the FX tests.
"""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"
FIXTURES = ROOT / "fixtures"
