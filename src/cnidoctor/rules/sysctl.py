"""(to be written)"""

from cnidoctor.rules.base import Rule

RULES: list[type[Rule]] = []
