"""Error signatures: known CNI/kubelet/containerd/k3s messages mapped to catalog ids.

`explain(text)` names the failure modes behind a pasted error line or a whole log. The
table (`table.SIGNATURES`) is data: each entry keeps the real message it was written
from, and the tests check that every such message is recognised.
"""

from __future__ import annotations

from cnidoctor.signatures.match import Match, explain
from cnidoctor.signatures.table import SIGNATURES, Example, Signature

__all__ = ["SIGNATURES", "Example", "Match", "Signature", "explain"]
