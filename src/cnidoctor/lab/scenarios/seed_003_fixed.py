"""seed-003-fixed: incident 003 after its fix (see seed_003): must come out clean."""

from __future__ import annotations

from cnidoctor.lab.scenarios.seed_003 import FIXED

SCENARIO = FIXED
